"""What every job row (embedding job, import job, model version, learner snapshot) shares.

For now the text a failure leaves on its row; the claim / hand-back / resend-if-stuck idiom of
the job modules is still written once per job kind.
"""

from __future__ import annotations

#: Longest error text stored on a row (the columns are TextField; this keeps pages short).
ERROR_MAX = 2000


def error_text(exc: BaseException) -> str:
    """``"<ExceptionType>: <message>"``, cut to :data:`ERROR_MAX` characters."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
