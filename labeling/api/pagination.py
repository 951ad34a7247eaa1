"""Pages of list endpoints: ``?limit=`` and ``?offset=`` checked, and a largest page."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

#: Largest page a client may ask for (``?limit=``); the default page is PAGE_SIZE (100).
MAX_LIMIT = 1000


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination that answers 400 for a limit or offset that is not a whole number
    (DRF falls back to the defaults silently) and caps the limit at :data:`MAX_LIMIT`."""

    max_limit = MAX_LIMIT

    def _whole(self, request: Request, name: str, smallest: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValidationError({name: f"Use a whole number, got {raw[:40]!r}."}) from None
        if value < smallest:
            raise ValidationError({name: f"Use a whole number of at least {smallest}."})
        return value

    def get_limit(self, request: Any) -> int | None:
        value = self._whole(request, self.limit_query_param, 1)
        return self.default_limit if value is None else min(value, MAX_LIMIT)

    def get_offset(self, request: Any) -> int:
        # An offset beyond the last row is an empty page (DRF checks it against the count
        # before slicing), so no upper bound is needed.
        return self._whole(request, self.offset_query_param, 0) or 0

    def paginate_counted(
        self, count: int, rows: Callable[[int, int], Iterable[Any]], request: Request
    ) -> list[Any] | None:
        """:meth:`paginate_queryset` for a list whose length the caller knows: ``count``
        rows, the page read by ``rows(offset, limit)``. No COUNT(*), and the caller may
        seek to the offset through an index instead of skipping rows (docs/scaling.md,
        "Items listing")."""
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.count = count
        self.offset = self.get_offset(request)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        if self.count == 0 or self.offset > self.count:
            return []
        return list(rows(self.offset, self.limit))
