"""Domain models; the database guards the invariants (uniqueness, states, counts) with constraints."""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q


class Taste(models.Model):
    """A named target aesthetic with its own cohort of annotators and checkpoint lineage."""

    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    guidelines = models.TextField(
        blank=True, help_text="Markdown shown to annotators on their first visit and behind the g key."
    )
    annotators = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="TasteMembership", related_name="tastes", blank=True
    )
    current_checkpoint = models.ForeignKey(
        "Checkpoint", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    gold_share = models.FloatField(
        default=0.0, validators=[MinValueValidator(0), MaxValueValidator(0.5)],
        help_text="Share of each annotator's pairs served from the taste's gold pairs (0 to 0.5).",
    )
    speed_floor_ms = models.PositiveIntegerField(
        default=1500, help_text="Answers faster than this (ms) count as too fast on the annotator table."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class TasteMembership(models.Model):
    """An annotator's membership of a taste's cohort."""

    taste = models.ForeignKey(Taste, on_delete=models.CASCADE)
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    joined_at = models.DateTimeField(auto_now_add=True)
    # Set when `next` found nothing for the annotator; the refill samples for those who waited lately.
    waiting_since = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["annotator", "taste"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.annotator} in {self.taste}"


class BaseModel(models.Model):
    """A diffusers pipeline folder on disk that checkpoints build on."""

    class Kind(models.TextChoices):
        FLUX = "flux", "FLUX"
        SD = "sd", "Stable Diffusion"
        SDXL = "sdxl", "Stable Diffusion XL"

    name = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    path = models.CharField(max_length=1000, help_text="Folder holding the diffusers model_index.json.")
    default_steps = models.PositiveSmallIntegerField(default=28)
    default_guidance = models.FloatField(default=3.5)
    default_width = models.PositiveIntegerField(default=1024)
    default_height = models.PositiveIntegerField(default=1024)
    default_max_sequence_length = models.PositiveIntegerField(
        null=True, blank=True, help_text="FLUX: T5 prompt length (empty: the pipeline's 512)."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["flux", "sd", "sdxl"]), name="basemodel_kind_valid")
        ]

    def __str__(self) -> str:
        return self.name


class Checkpoint(models.Model):
    """A base model plus a chain of LoRA folders: the parent's chain and this checkpoint's own LoRA."""

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        CURRENT = "current"
        RETIRED = "retired"
        REJECTED = "rejected"

    taste = models.ForeignKey(Taste, on_delete=models.PROTECT, related_name="checkpoints")
    base_model = models.ForeignKey(BaseModel, on_delete=models.PROTECT, related_name="checkpoints")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    lora_path = models.CharField(max_length=1000, blank=True, help_text="Empty for the bare base model.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CANDIDATE)
    metrics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["candidate", "current", "retired", "rejected"]),
                name="checkpoint_status_valid",
            ),
            models.UniqueConstraint(
                fields=["taste"], condition=Q(status="current"), name="checkpoint_one_current_per_taste"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.taste}#{self.pk} ({self.status})"


class Prompt(models.Model):
    """A caption to sample from; held-out prompts are kept for evaluation pairs."""

    MAX_CHARS = 1000  # far beyond what a text encoder reads (CLIP: 77 tokens); refused on import and launch

    class Split(models.TextChoices):
        TRAIN = "train"
        HELDOUT = "heldout"

    text = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    split = models.CharField(max_length=8, choices=Split.choices, default=Split.TRAIN)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(split__in=["train", "heldout"]), name="prompt_split_valid")
        ]

    def __str__(self) -> str:
        return self.text[:80]


class Round(models.Model):
    """One turn of the loop: sample from the parent, collect labels, train, evaluate, promote."""

    class State(models.TextChoices):
        DRAFT = "draft"
        SAMPLING = "sampling"
        ANNOTATING = "annotating"
        TRAINING = "training"
        EVALUATING = "evaluating"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    # States in which a round's pairs are handed to annotators.
    OPEN_STATES = (State.SAMPLING, State.ANNOTATING, State.EVALUATING)

    taste = models.ForeignKey(Taste, on_delete=models.PROTECT, related_name="rounds")
    number = models.PositiveIntegerField()
    parent_checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="child_rounds"
    )
    child_checkpoint = models.ForeignKey(
        Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.DRAFT)
    pair_quota = models.PositiveIntegerField(default=500)
    label_quota = models.PositiveIntegerField(default=1000)
    overlap = models.PositiveSmallIntegerField(default=2)
    sampling_config = models.JSONField(default=dict, blank=True)
    training_config = models.JSONField(default=dict, blank=True)
    progress = models.JSONField(default=dict, blank=True)
    # Steering: a round advances by itself once its quotas are met (else the lead advances it); a paused
    # round hands out no pairs and samples nothing.
    auto_advance = models.BooleanField(default=True)
    paused = models.BooleanField(default=False)
    # Evaluation: child-vs-parent pairs on held-out prompts (sampling_config["eval_prompt_ids"]); the child is
    # promoted when the win rate's lower bound clears the threshold and every guard-rail holds.
    eval_pair_quota = models.PositiveIntegerField(default=48)
    promotion_threshold = models.FloatField(default=0.5)
    guard_rails = models.JSONField(
        default=dict, blank=True, help_text='e.g. {"adherence": {"max_drop": 0.05}}: checks that must not degrade.'
    )
    decision = models.JSONField(default=dict, blank=True, help_text="The promotion decision with its figures.")
    # Annotator trust in training (annotate/agreement.trust_score): off, drop the judgements of annotators below
    # the threshold, or weight every judgement by its annotator's trust (the export's weight column).
    trust_mode = models.CharField(
        max_length=8, choices=[("off", "off"), ("exclude", "exclude"), ("weight", "weight")], default="off"
    )
    trust_threshold = models.FloatField(
        default=0.4, validators=[MinValueValidator(0), MaxValueValidator(1)],
        help_text="With trust mode exclude: annotators whose trust is below this are left out of training.",
    )
    error = models.TextField(blank=True)
    failed_in = models.CharField(max_length=16, blank=True, help_text="The step a failed round stopped in.")
    # Sampling bookkeeping: the next (prompt, seed) index to hand out, and while a sample task holds the
    # round, until when (a crashed task's hold runs out and the beat task takes over).
    sample_cursor = models.PositiveIntegerField(default=0, editable=False)
    sampling_until = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    state__in=["draft", "sampling", "annotating", "training", "evaluating", "done", "failed", "cancelled"]
                ),
                name="round_state_valid",
            ),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="round_overlap_positive"),
            models.CheckConstraint(condition=Q(label_quota__gte=F("overlap")), name="round_label_quota_covers_overlap"),
            models.CheckConstraint(
                condition=Q(promotion_threshold__gte=0) & Q(promotion_threshold__lte=1),
                name="round_promotion_threshold_unit",
            ),
            models.UniqueConstraint(fields=["taste", "number"], name="round_number_unique_per_taste"),
        ]

    def __str__(self) -> str:
        return f"{self.taste} round {self.number} ({self.state})"



def image_upload_path(image: "Image", filename: str) -> str:
    # Content-addressed, so a file never changes under its URL and may be cached forever.
    return f"images/{image.sha256[:2]}/{image.sha256}{filename[filename.rfind('.'):]}"


class Image(models.Model):
    """A generated (or imported) image with everything needed to make it again."""

    checkpoint = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="images")
    # For images made outside Chisel (imported datasets): the model that made them, as the source named it.
    model_name = models.CharField(max_length=300, blank=True)
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="images")
    seed = models.BigIntegerField(null=True, blank=True)
    params = models.JSONField(default=dict, blank=True)
    file = models.FileField(upload_to=image_upload_path)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    diagnostics = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        # Serving a file checks who may see it by its stored name (annotate.access.access_image_file).
        indexes = [models.Index(fields=["file"], name="image_by_file")]

    def __str__(self) -> str:
        return f"image {self.pk} ({self.width}×{self.height})"


class Pair(models.Model):
    """Two images of one prompt, to be judged by `overlap` different annotators."""

    class Kind(models.TextChoices):
        TRAIN = "train"
        EVAL = "eval"
        GOLD = "gold"
        # The child against its lineage's root (the base), judged while the round evaluates, blind like an eval
        # pair: the measured cumulative figure. Never part of the gate (which compares child and parent).
        BASE = "base"

    # A gold pair's overlap: it is served to every annotator once, so it never fills up.
    GOLD_OVERLAP = 32767

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="pairs")
    taste = models.ForeignKey(Taste, on_delete=models.PROTECT, related_name="pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.PROTECT, related_name="pairs")
    image_a = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    image_b = models.ForeignKey(Image, on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.TRAIN)
    # A gold pair's expected answer (kind gold): served to every annotator of the taste once, scored, never trained on.
    gold_choice = models.CharField(
        max_length=4, blank=True, default="", choices=[("a", "a"), ("b", "b"), ("tie", "tie")]
    )
    # The seed that names this pair within its round (with prompt and kind): sampling it twice makes one pair.
    seed = models.BigIntegerField(null=True, blank=True)
    overlap = models.PositiveSmallIntegerField(default=2, help_text="Judgements this pair needs.")
    # A train pair kept back from annotation until the round evaluates, then offered mixed with its eval pairs
    # so that nothing in time tells them apart; its labels come after the dataset froze and are kept apart.
    held_back = models.BooleanField(default=False, editable=False)
    # Live leases plus judgements; kept by the services, bounded by the constraints below.
    assigned_count = models.PositiveSmallIntegerField(default=0, editable=False)
    judged_count = models.PositiveSmallIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=["train", "eval", "gold", "base"]), name="pair_kind_valid"),
            models.CheckConstraint(condition=Q(overlap__gte=1), name="pair_overlap_positive"),
            models.CheckConstraint(
                condition=(Q(kind="gold") & Q(gold_choice__in=["a", "b", "tie"])) | (~Q(kind="gold") & Q(gold_choice="")),
                name="pair_gold_has_answer",
            ),
            models.CheckConstraint(condition=Q(assigned_count__lte=F("overlap")), name="pair_not_over_assigned"),
            models.CheckConstraint(
                condition=Q(judged_count__lte=F("assigned_count")), name="pair_judged_within_assigned"
            ),
            models.CheckConstraint(condition=~Q(image_a=F("image_b")), name="pair_images_distinct"),
            models.UniqueConstraint(
                fields=["round", "kind", "prompt", "seed"], condition=Q(seed__isnull=False), name="pair_sampled_once"
            ),
        ]
        indexes = [
            # The claim's scan: open pairs of a taste, fullest first.
            models.Index(
                fields=["taste", "-assigned_count", "id"],
                condition=Q(assigned_count__lt=F("overlap")),
                name="pair_open_by_taste",
            )
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} ({self.kind}, {self.judged_count}/{self.overlap})"


class Assignment(models.Model):
    """A pair leased to one annotator, with the side each image is shown on."""

    class State(models.TextChoices):
        LEASED = "leased"
        JUDGED = "judged"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="assignments")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="assignments")
    left_is_a = models.BooleanField(help_text="True when image A is shown on the left.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.LEASED)
    claimed_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "annotator"], name="assignment_unique_pair_annotator"),
            models.CheckConstraint(
                condition=Q(state__in=["leased", "judged", "skipped", "expired"]), name="assignment_state_valid"
            ),
            models.CheckConstraint(
                condition=Q(lease_expires_at__gt=F("claimed_at")), name="assignment_lease_after_claim"
            ),
        ]
        indexes = [
            models.Index(fields=["lease_expires_at"], condition=Q(state="leased"), name="assignment_live_leases"),
            models.Index(fields=["annotator", "state"], name="assignment_by_annotator"),
        ]

    def __str__(self) -> str:
        return f"assignment {self.pk} ({self.state})"


class Judgement(models.Model):
    """An annotator's verdict on a pair, stored relative to images A/B, never to screen sides."""

    class Choice(models.TextChoices):
        A = "a"
        B = "b"
        TIE = "tie"
        BOTH_BAD = "both_bad"

    class Flag(models.TextChoices):
        WAXY_SKIN = "waxy_skin"
        BLURRY_BACKGROUND = "blurry_background"
        FLAT_COLOUR = "flat_colour"
        OVERSATURATED = "oversaturated"
        BLAND_COMPOSITION = "bland_composition"
        ARTIFACTS = "artifacts"
        OFF_PROMPT = "off_prompt", "Doesn't match the prompt"

    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="judgement")
    # Denormalised from the assignment so exports and agreement queries need no join, and so the
    # database itself refuses a second judgement of one pair by one annotator.
    pair = models.ForeignKey(Pair, on_delete=models.PROTECT, related_name="judgements")
    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements")
    client_uuid = models.UUIDField(unique=True, default=uuid.uuid4)
    choice = models.CharField(max_length=8, choices=Choice.choices)
    flags_a = models.JSONField(default=list, blank=True)
    flags_b = models.JSONField(default=list, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when the annotator changed their mind (undo, then judge again) within the lease.
    amended_at = models.DateTimeField(null=True, blank=True)
    amendments = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(choice__in=["a", "b", "tie", "both_bad"]), name="judgement_choice_valid"),
            models.UniqueConstraint(fields=["pair", "annotator"], name="judgement_unique_pair_annotator"),
        ]
        indexes = [models.Index(fields=["annotator", "created_at"], name="judgement_by_annotator_time")]

    def __str__(self) -> str:
        return f"judgement {self.pk}: {self.choice}"


class JobState(models.TextChoices):
    """States of a background job row (exports, training)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class Export(models.Model):
    """A preference dataset export run as a background job, with its progress and result."""

    State = JobState

    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="exports")
    options = models.JSONField(default=dict, help_text="Filters and format, as ExportOptions fields.")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    done = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(default=0)
    file_name = models.CharField(max_length=300, blank=True, help_text="Relative to CHISEL_EXPORT_ROOT.")
    summary = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempt = models.PositiveSmallIntegerField(default=0, help_text="Runs started; a dead worker's run is retried.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Start or last progress of the running attempt.")
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "done", "failed"]), name="export_state_valid"
            ),
            models.CheckConstraint(condition=Q(done__lte=F("total")) | Q(total=0), name="export_done_within_total"),
        ]

    def __str__(self) -> str:
        return f"export {self.pk} ({self.state})"


class TrainingJob(models.Model):
    """Training a round's LoRA, as a database row with a lease: the Celery message only wakes a worker.

    Training can outlive a broker's visibility timeout, so the row decides who runs: a worker claims it
    (attempt + 1) and renews `lease_until` with heartbeats; a job whose lease ran out may be claimed again,
    and a stale attempt can no longer write its result.
    """

    State = JobState

    round = models.ForeignKey(Round, on_delete=models.PROTECT, related_name="training_jobs")
    state = models.CharField(max_length=8, choices=State.choices, default=State.QUEUED)
    attempt = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    config = models.JSONField(default=dict, blank=True)
    run_dir = models.CharField(max_length=1000, blank=True)
    step = models.PositiveIntegerField(default=0, help_text="Steps done, renewed with each heartbeat.")
    steps = models.PositiveIntegerField(default=0, help_text="Steps the config asks for.")
    candidate = models.ForeignKey(Checkpoint, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    metrics = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "done", "failed"]), name="trainingjob_state_valid"
            ),
            models.CheckConstraint(
                condition=~Q(state="running") | Q(lease_until__isnull=False), name="trainingjob_running_has_lease"
            ),
        ]

    def __str__(self) -> str:
        return f"training job {self.pk} (round {self.round_id}, {self.state}, attempt {self.attempt})"
