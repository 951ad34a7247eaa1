"""Campaigns and their items: the database is the source of truth for every label."""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

DEFAULT_LABELS = ["negative", "positive"]
MIN_LABELS, MAX_LABELS = 2, 20


def default_labels() -> list[str]:
    return list(DEFAULT_LABELS)


MAX_LABEL_LENGTH = 200  # Label.value, Decision.value, Item.gold
LABEL_MARKS = ("\n", "\r", ",", "->", "→")


def validate_label_set(value: object) -> None:
    """2..20 distinct, non-blank labels (compared ignoring case and surrounding spaces)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError("The label set must be a list of strings.")
    cleaned = [v.strip() for v in value]
    if any(not v for v in cleaned):
        raise ValidationError("Labels cannot be blank.")
    if not MIN_LABELS <= len(cleaned) <= MAX_LABELS:
        raise ValidationError(
            f"A campaign needs {MIN_LABELS} to {MAX_LABELS} labels, got {len(cleaned)}."
        )
    lowered = [v.lower() for v in cleaned]
    if len(set(lowered)) != len(lowered):
        raise ValidationError("Labels must be distinct (ignoring case).")
    for v in cleaned:
        if len(v) > MAX_LABEL_LENGTH:
            raise ValidationError(f"A label has at most {MAX_LABEL_LENGTH} characters: {v[:40]!r}…")
        # The edit form reads one label per line, "," between labels and "old -> new" as a
        # rename (docs/platform.md, "Campaign settings"): a name with them could not be edited.
        if any(mark in v for mark in LABEL_MARKS):
            raise ValidationError(
                f"A label cannot contain a line break, a comma, '->' or '→': {v!r}."
            )


def validate_card_metadata(value: object) -> None:
    """None (every metadata key) or a list of key names."""
    if value is not None and (
        not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)
    ):
        raise ValidationError("Give a list of metadata keys (strings), or null for every key.")


def text_key(text: str) -> str:
    """Fixed-length key of a text, so uniqueness never indexes a long text column."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Campaign(models.Model):
    name = models.CharField(max_length=200)
    instructions = models.TextField(blank=True)
    labels = models.JSONField(default=default_labels, validators=[validate_label_set])
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="campaigns_created"
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="campaigns"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Learner settings (learner.LearnerConfig). The defaults are LearnerConfig.recommended()
    # for 384-d sentence embeddings, tuned on SST-2 and MR (docs/benchmarks.md).
    depth = models.PositiveSmallIntegerField(
        "network depth",
        default=2,
        choices=[(2, "2 (one hidden layer)"), (3, "3 (two hidden layers)"), (4, "4 (three)")],
        help_text="Layers of the ReLU network the learner keeps consistent with the labels. "
        "Deeper networks fit more complex boundaries and take longer per update.",
    )
    n_gates = models.PositiveIntegerField(
        "gates (P)",
        default=32,
        validators=[MinValueValidator(1), MaxValueValidator(512)],
        help_text="Random ReLU activation patterns of the hidden layer (depth 2; deeper networks "
        "use the learner's per-layer defaults: 8 x 2 at depth 3, 4 x 2 x 2 at depth 4).",
    )
    projection_dim = models.PositiveIntegerField(
        "projection dimension",
        default=64,
        validators=[MaxValueValidator(4096)],
        help_text="PCA of the embeddings to this many dimensions; 0 keeps them as they are.",
    )
    radius = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(1e-6), MaxValueValidator(1e6)],
        help_text="Radius of the box bounding the network weights.",
    )
    softness = models.FloatField(
        "label softness (delta)",
        null=True,
        blank=True,
        default=None,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.1)],
        help_text="How far the learner's networks may disagree with a label, as a fraction of "
        "the weight radius (noisy labels then become suspects instead of being fitted). Blank: "
        "chosen by cross-validation on the campaign's labels (recommended); 0: every label is "
        "fitted exactly (hard cuts).",
    )
    batch_size = models.PositiveIntegerField(
        default=4,
        validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Items the learner proposes per round (diverse batch).",
    )
    seed = models.PositiveIntegerField(default=0, help_text="Seed of the gates and projection.")

    # Labeling.
    overlap = models.PositiveSmallIntegerField(
        "labels per item",
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(5)],
        help_text="Independent labels each item needs, from different annotators.",
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(0.5)],
        help_text="Share of served items taken from the gold items (never shown as gold).",
    )
    retrain_every = models.PositiveIntegerField(
        "retrain every",
        default=50,
        validators=[MaxValueValidator(100_000)],
        help_text="Fit a new model version automatically every this many labels; 0 = only on "
        "demand.",
    )

    class Suggestions(models.TextChoices):
        OFF = "off", "never shown"
        AUTO = "auto", "shown, except on gold and evaluation items"
        ALL = "all", "shown on every item"

    # The model's suggested label on the labeling card (docs/platform.md, "Suggestions").
    show_suggestions = models.CharField(
        "model suggestions",
        max_length=4,
        choices=Suggestions.choices,
        default=Suggestions.AUTO,
        help_text="Show annotators the current model's guess with its confidence. Hidden on "
        "gold and evaluation items by default, so they measure the annotators and the model "
        "without anchoring.",
    )
    # The reserved evaluation set (docs/platform.md, "The evaluation set").
    evaluation_size = models.PositiveIntegerField(
        "evaluation items",
        default=100,
        validators=[MaxValueValidator(100_000)],
        help_text="Items drawn at random from the pool, labeled like any other but never "
        "trained on: they measure the model's accuracy honestly. At most 5% of the pool; "
        "0 = none.",
    )
    # Metadata keys shown on the labeling card; None: every key.
    card_metadata = models.JSONField(null=True, blank=True, default=None)
    # Progress goals shown to annotators; None: the pool size (campaign) / no personal goal.
    label_goal = models.PositiveIntegerField(null=True, blank=True)
    annotator_goal = models.PositiveIntegerField(null=True, blank=True)
    # Set when a manager stops the campaign: nothing more is served to annotators.
    stopped_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Bumped by every label change; a learner run records the version it saw (coalescing).
    label_version = models.PositiveIntegerField(default=0, editable=False)
    # Items with at least ``overlap`` active labels: the labeling card's campaign progress,
    # kept by each label change under the campaign row's lock (labeling.annotation), so a
    # render reads it instead of counting the labels (docs/scaling.md, "The labeling card's
    # progress").
    n_fully_labeled = models.PositiveIntegerField(default=0, editable=False)
    # A learner update is queued and has not started yet: no second one is sent.
    learner_pending = models.BooleanField(default=False, editable=False)
    learner_requested_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Written only by conditional UPDATEs (labeling.campaign_learner); a save() of a campaign loaded
    # earlier must not put old values back.
    COUNTERS = frozenset(
        {
            "label_version",
            "n_fully_labeled",
            "learner_pending",
            "learner_requested_at",
            "stopped_at",
        }
    )

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if (
            not self._state.adding
            and kwargs.get("update_fields") is None
            and not kwargs.get("force_insert")
        ):
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.name not in self.COUNTERS
            ]
        super().save(*args, **kwargs)


# What a campaign manager sets on a campaign besides its labels: the edit page and the API
# offer exactly these.
CAMPAIGN_SETTINGS = (
    "name",
    "instructions",
    "annotators",
    "depth",
    "n_gates",
    "projection_dim",
    "radius",
    "softness",
    "batch_size",
    "seed",
    "overlap",
    "gold_rate",
    "retrain_every",
    "show_suggestions",
    "evaluation_size",
    "card_metadata",
    "label_goal",
    "annotator_goal",
)


class Upload(models.Model):
    """One accepted dataset file and what the import made of it."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)
    text_column = models.CharField(max_length=200)
    gold_column = models.CharField(max_length=200, blank=True)
    n_rows = models.PositiveIntegerField()
    n_created = models.PositiveIntegerField()
    n_blank = models.PositiveIntegerField()
    n_duplicates = models.PositiveIntegerField()
    # Near-duplicate detection (docs/platform.md, "Near-duplicates"): the cosine similarity
    # from which two items count as near-duplicates (None: off), and when the check ran.
    near_duplicate_threshold = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
    )
    near_duplicates_checked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.filename} ({self.n_created} items)"


class Item(models.Model):
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="items")
    upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="items")
    text = models.TextField()
    text_sha256 = models.CharField(max_length=64, editable=False)
    gold = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Row order of the pool: the embedding matrix's row for this item.
    position = models.PositiveIntegerField()
    # In the reserved evaluation set: served like gold, never queried nor trained on.
    evaluation = models.BooleanField(default=False)
    # The served model version's prediction (class index) and calibrated confidence.
    predicted = models.PositiveSmallIntegerField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    # A manager sent it to review (bulk action on the items page).
    review_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["campaign", "text_sha256"], name="item_text_once"),
            models.UniqueConstraint(fields=["campaign", "position"], name="item_position_once"),
        ]
        ordering = ["campaign", "position"]
        # The items page's filters, walked in position order (docs/scaling.md, "The items
        # page"); PostgreSQL also gets a trigram index on the text (migration 0018).
        indexes = [
            models.Index(
                fields=["campaign", "position"],
                condition=~models.Q(gold=""),
                name="item_gold",
            ),
            models.Index(
                fields=["campaign", "position"],
                condition=models.Q(evaluation=True),
                name="item_evaluation",
            ),
            models.Index(
                fields=["campaign", "position"],
                condition=models.Q(review_requested_at__isnull=False),
                name="item_review_requested",
            ),
            models.Index(fields=["campaign", "confidence"], name="item_confidence"),
        ]

    def __str__(self) -> str:
        return self.text[:60]


class JobStatus(models.TextChoices):
    """The life of every job row (embedding job, import job, model version)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class EmbeddingJob(models.Model):
    """One run of the embedding task over a campaign's items; the row the UI reads.

    The task claims the row with a conditional UPDATE (QUEUED, or RUNNING with a heartbeat
    older than CARVE_JOB_STALE_SECONDS, i.e. its worker died) and bumps ``attempt``; every
    later write is conditional on that attempt, so a worker that lost the row stops.
    """

    Status = JobStatus

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="embedding_jobs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    model_name = models.CharField(max_length=200)
    n_total = models.PositiveIntegerField(default=0)
    n_done = models.PositiveIntegerField(default=0)
    # Rows that came from the campaign's cache instead of the model.
    n_cached = models.PositiveIntegerField(default=0)
    dim = models.PositiveIntegerField(null=True, blank=True)
    device = models.CharField(max_length=40, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    worker = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When a task message was last sent for this job (rate-limits re-sending a stuck job).
    sent_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The current attempt's chunks [[start, stop], ...] and how many have been handed out:
    # the workers taking part each take the next one (docs/platform.md, "Embedding jobs").
    plan = models.JSONField(default=list, blank=True)
    next_piece = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["campaign", "status"])]

    def __str__(self) -> str:
        return f"embedding job {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.n_done / self.n_total) if self.n_total else 0

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)


class EmbeddingChunk(models.Model):
    """Rows ``start..stop`` of a campaign's embedding matrix by one model, in the database.

    The database is where every process reads embeddings from (docs/platform.md,
    "Embeddings"): ``data`` is the float32 matrix of shape (stop - start, dim), C order,
    little-endian. ``rows_digest`` (:func:`labeling.embeddings.chunks.rows_digest` over the
    items' text keys at those positions) pins the rows it embeds; items are append-only, so a
    chunk stays valid for as long as the campaign exists.
    """

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="embedding_chunks"
    )
    model_name = models.CharField(max_length=200)
    start = models.PositiveIntegerField()
    stop = models.PositiveIntegerField()
    rows_digest = models.CharField(max_length=64)
    dim = models.PositiveIntegerField()
    data = models.BinaryField()
    worker = models.CharField(max_length=200, blank=True)  # the worker that embedded it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "model_name", "start"]
        constraints = [
            # Written once: a second worker embedding the same rows inserts nothing.
            models.UniqueConstraint(
                fields=["campaign", "model_name", "start", "stop", "rows_digest"],
                name="embedding_chunk_once",
            ),
        ]

    def __str__(self) -> str:
        return f"embeddings {self.start}..{self.stop} of campaign {self.campaign_id}"


class ImportJob(models.Model):
    """A bulk item import requested through the API: the file waits here until it is imported.

    Small files are imported during the request; larger ones by the ``import_items`` task.
    A run claims the row like an embedding job (a conditional UPDATE bumping ``attempt``);
    ``background`` says whether a worker was asked to run it.
    The items and the DONE status are written in one transaction that first locks this row
    and checks the attempt, so an import happens completely, once, or not at all.
    """

    Status = JobStatus

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    filename = models.CharField(max_length=255)
    text_column = models.CharField(max_length=200, blank=True)  # chosen; blank: detected
    gold_column = models.CharField(max_length=200, blank=True)
    # The file, until it is imported or refused (then emptied).
    data = models.BinaryField(null=True, blank=True)
    size_bytes = models.PositiveBigIntegerField(default=0)
    background = models.BooleanField(default=False)  # run by a worker (True) or the request
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveIntegerField(default=0)
    upload = models.ForeignKey(
        Upload, null=True, blank=True, on_delete=models.SET_NULL, related_name="import_jobs"
    )
    # Counts of a finished import: rows, created, existing, blank, duplicates, gold.
    result = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)  # why the file was refused
    error = models.TextField(blank=True)  # an unexpected failure (worker log has the trace)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status"])]

    def __str__(self) -> str:
        return f"import job {self.pk} ({self.status})"


class Assignment(models.Model):
    """An item handed to an annotator: LEASED until ``expires_at``, then LABELED or SKIPPED.

    One row per (item, annotator), so nobody is served the same item twice. An item is
    available while it has fewer than ``campaign.overlap`` assignments that are LABELED or
    still-valid leases; a claim counts them under a lock on the item row.
    """

    class State(models.TextChoices):
        LEASED = "leased"
        LABELED = "labeled"
        SKIPPED = "skipped"

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="assignments")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    state = models.CharField(max_length=10, choices=State.choices, default=State.LEASED)
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "annotator"], name="assignment_once"),
        ]
        indexes = [models.Index(fields=["annotator", "state"])]

    def __str__(self) -> str:
        return f"{self.item_id} → {self.annotator_id} ({self.state})"


class Label(models.Model):
    """A label an annotator gave an item: the source of truth. Undo sets ``undone_at``;
    rows are never deleted, so no label is ever lost."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="labels")
    annotator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="labels"
    )
    value = models.CharField(max_length=200)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    undone_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # A double-submitted label is stored once.
            models.UniqueConstraint(
                fields=["item", "annotator"],
                condition=models.Q(undone_at__isnull=True),
                name="label_once_per_annotator",
            ),
        ]
        indexes = [models.Index(fields=["item", "undone_at"])]

    def __str__(self) -> str:
        return f"{self.value} on {self.item_id} by {self.annotator_id}"


class Decision(models.Model):
    """A campaign manager's verdict on an item in review (disagreeing annotators, or labels
    the learner found contradictory). The latest decision overrides the annotators' labels
    in training; their labels stay as they were."""

    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="decisions")
    value = models.CharField(max_length=200)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.value} for {self.item_id}"


class LearnerSnapshot(models.Model):
    """The campaign's learner after its last update: a cache, rebuilt from the labels when
    missing or stale (docs/platform.md, "The labeling loop"), and the ranked queue of items to
    serve next."""

    campaign = models.OneToOneField(Campaign, on_delete=models.CASCADE, related_name="learner")
    # Campaign.label_version this snapshot reflects; an older run never overwrites a newer one.
    version = models.PositiveIntegerField(default=0)
    # What the state was built from: learner config and embeddings (model, rows digest).
    fingerprint = models.CharField(max_length=64)
    state = models.BinaryField()  # learner.LearnerState.to_bytes()
    # Training labels in the state, in order: [label ids of the item, item id, class index].
    training = models.JSONField(default=list)
    queue = models.JSONField(default=list)  # item ids, most informative first
    conflicts = models.JSONField(default=list)  # groups of item ids that cannot all be right
    # Labeled item ids the (soft) centre gets wrong, most wrong first: the labels to review.
    suspects = models.JSONField(default=list)
    center_status = models.CharField(max_length=40, blank=True)
    message = models.TextField(blank=True)
    solver = models.CharField(max_length=200, blank=True)
    # Calibration of the centre's margins (learner.calibration) and what it gave.
    calibration = models.JSONField(default=dict)
    # {item id: [class index, calibrated probability, reason]} for the queued items.
    suggestions = models.JSONField(default=dict)
    # Cross-validated accuracy estimate from the labels so far ({} until there are enough).
    estimate = models.JSONField(default=dict)
    n_labels = models.PositiveIntegerField(default=0)
    round = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    rebuilt = models.BooleanField(default=False)  # from scratch (True) or incremental
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"learner of {self.campaign_id} (v{self.version}, {self.n_labels} labels)"


class LearnerPoint(models.Model):
    """One learner update's measurements: the learning curve and the convergence diagnostics."""

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="curve")
    n_labels = models.PositiveIntegerField()
    # The centre network's accuracy on gold items not used for training (None: no gold left).
    gold_accuracy = models.FloatField(null=True, blank=True)
    n_gold = models.PositiveIntegerField(default=0)
    # Accuracy on labeled evaluation items, with its Wilson interval (None: too few yet).
    eval_accuracy = models.FloatField(null=True, blank=True)
    eval_low = models.FloatField(null=True, blank=True)
    eval_high = models.FloatField(null=True, blank=True)
    n_eval = models.PositiveIntegerField(default=0)
    # Cross-validated accuracy on the training labels (shown until the evaluation set has enough).
    cv_accuracy = models.FloatField(null=True, blank=True)
    log_volume = models.FloatField(null=True, blank=True)
    disagreement = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "n_labels", "pk"]

    def __str__(self) -> str:
        return f"{self.campaign_id} at {self.n_labels} labels"


class ModelVersion(models.Model):
    """A trained model of the campaign: numbered, with its metrics and its network."""

    Status = JobStatus

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="models")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, default="manual")  # "auto" or "manual"
    n_labels = models.PositiveIntegerField(default=0)
    # "convex" (the group-lasso fit) or "centre" (the analytic centre), whichever scored better
    # on held-out gold items (the centre when there is no gold to compare on).
    chosen = models.CharField(max_length=10, blank=True)
    metrics = models.JSONField(default=dict)
    network = models.JSONField(default=dict)  # learner.ReLUNetwork.to_dict()
    embedding_model = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)  # last task message sent
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Runs started: a run whose worker died is taken over, up to CARVE_JOB_MAX_ATTEMPTS.
    attempt = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["campaign", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "number"], name="model_number_once")
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id} v{self.number} ({self.status})"


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 is stored; the token is shown once, at creation."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)  # the first characters, to tell tokens apart
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class ExportJob(models.Model):
    """A label export written by a worker (docs/platform.md, "Export jobs").

    Claimed like an import job (a conditional UPDATE bumping ``attempt``). The file is
    written a chunk of items at a time and stored in :class:`ExportPart` rows of at most
    ``CARVE_EXPORT_PART_BYTES``, so no process holds the whole file and any web process can
    stream it back (there is no shared disk).
    """

    Status = JobStatus

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="export_jobs")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # The export's options, as the export endpoint takes them: as, rows, items.
    format = models.CharField(max_length=20, default="csv")
    rows = models.CharField(max_length=10, default="labels")
    items = models.CharField(max_length=10, default="labeled")
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempt = models.PositiveIntegerField(default=0)
    n_total = models.PositiveIntegerField(default=0)  # items to write
    n_done = models.PositiveIntegerField(default=0)
    n_rows = models.PositiveIntegerField(default=0)  # rows written
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    worker = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["campaign", "status"])]

    def __str__(self) -> str:
        return f"export job {self.pk} ({self.status})"

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.n_done / self.n_total) if self.n_total else 0

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)


class ExportPart(models.Model):
    """Part ``number`` of the file an export job's ``attempt`` wrote, in order."""

    job = models.ForeignKey(ExportJob, on_delete=models.CASCADE, related_name="parts")
    attempt = models.PositiveIntegerField()  # the job attempt that wrote it
    number = models.PositiveIntegerField()
    data = models.BinaryField()

    class Meta:
        ordering = ["job", "attempt", "number"]
        constraints = [
            models.UniqueConstraint(fields=["job", "attempt", "number"], name="export_part_once")
        ]

    def __str__(self) -> str:
        return f"part {self.number} of export job {self.job_id}"


class Webhook(models.Model):
    """An HTTP endpoint told about a campaign's events (docs/platform.md, "Webhooks").

    Every payload is signed with HMAC-SHA256 under ``secret`` (header
    ``X-Carve-Signature``); ``events`` is the list of event names it wants.
    """

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=128)
    events = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "pk"]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url}"


class WebhookDelivery(models.Model):
    """One event for one webhook: sent by a worker, retried with backoff, kept as the log.

    ``coalesce_key`` (e.g. ``item.labeled``) lets events of one kind that arrive while a
    delivery is still pending join that delivery instead of adding a request each.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        DELIVERED = "delivered"
        FAILED = "failed"

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    coalesce_key = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    response_status = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["webhook", "coalesce_key"],
                condition=models.Q(status="pending") & ~models.Q(coalesce_key=""),
                name="webhook_delivery_coalesced",
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → webhook {self.webhook_id} ({self.status})"


class NearDuplicate(models.Model):
    """Two items whose embeddings are at least the upload's threshold apart in cosine
    similarity (docs/platform.md, "Near-duplicates"). ``item`` is the later one."""

    class Status(models.TextChoices):
        OPEN = "open"
        MERGED = "merged"  # item deleted, its labels moved to duplicate_of
        KEPT = "kept"  # the manager kept both

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="near_duplicates")
    item = models.ForeignKey(Item, on_delete=models.CASCADE, related_name="near_duplicates")
    duplicate_of = models.ForeignKey(
        Item, on_delete=models.CASCADE, related_name="near_duplicate_of"
    )
    similarity = models.FloatField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["campaign", "-similarity", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["item", "duplicate_of"], name="near_duplicate_once")
        ]
        indexes = [models.Index(fields=["campaign", "status"])]

    def __str__(self) -> str:
        return f"item {self.item_id} ~ item {self.duplicate_of_id} ({self.similarity:.3f})"
