"""Annotator and lead endpoints of API v1."""

from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_serializer,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import selectors, services, waiting
from annotate.access import access_taste_for_annotation
from annotate.api.permissions import IsLead
from annotate.api.throttles import ChiselScopedThrottle
from annotate.models import Assignment, Image, Judgement

_datetime = serializers.DateTimeField()  # formats like every DateTimeField of the API


def flag_field() -> serializers.ListField:
    return serializers.ListField(child=serializers.ChoiceField(choices=Judgement.Flag.choices), required=False, default=list)


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    detail = serializers.CharField()


class ImageSerializer(serializers.Serializer):
    url = serializers.SerializerMethodField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()

    def get_url(self, image: Image) -> str:
        return image.file.url


class AssignmentNextApi(APIView):
    """The next pairs to judge: the caller's live leases, topped up with new ones, up to `prefetch`.

    Blind: nothing says whether a pair is a train or an eval pair, which round it belongs to, or which image
    came from which checkpoint (the assignment id is the only handle; image URLs name the stripped file's hash).
    """

    throttle_classes, throttle_scope = [ChiselScopedThrottle], "claims"

    @extend_schema_serializer(component_name="Assignment")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        prompt = serializers.CharField(source="pair.prompt.text")
        left = serializers.SerializerMethodField()
        right = serializers.SerializerMethodField()
        lease_expires_at = serializers.DateTimeField()

        @extend_schema(responses=ImageSerializer)
        def get_left(self, assignment: Assignment) -> dict:
            pair = assignment.pair
            return ImageSerializer(pair.image_a if assignment.left_is_a else pair.image_b).data

        @extend_schema(responses=ImageSerializer)
        def get_right(self, assignment: Assignment) -> dict:
            pair = assignment.pair
            return ImageSerializer(pair.image_b if assignment.left_is_a else pair.image_a).data

    @extend_schema_serializer(component_name="AssignmentNextQuery")
    class QuerySerializer(serializers.Serializer):
        taste = serializers.SlugField()
        prefetch = serializers.IntegerField(min_value=1, max_value=50, default=1)

    @extend_schema(
        parameters=[
            QuerySerializer,
            OpenApiParameter(
                "X-Chisel-Waiting", str, OpenApiParameter.HEADER, response=[204], enum=waiting.Reason.ORDER,
                description="Why there is nothing to judge: `sampling` (the worker is sampling pairs you may "
                "take), `training` (the round trains; its evaluation pairs follow), `paused` (the lead paused the "
                "round), `quota_reached` (the round has its labels and waits to train), `nothing_left` (no open "
                "round, or its remaining pairs are all with other annotators or judged by you).",
            ),
        ],
        responses={
            200: OutputSerializer(many=True),
            204: OpenApiResponse(description="Nothing to judge now; the `X-Chisel-Waiting` header says why."),
            403: ErrorSerializer,
            404: ErrorSerializer,
        },
    )
    def get(self, request: Request) -> Response:
        query = self.QuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        taste = access_taste_for_annotation(user=request.user, slug=query.validated_data["taste"])
        assignments = services.assignment_claim(
            annotator=request.user, taste=taste, count=query.validated_data["prefetch"]
        )
        if not assignments:
            reason = waiting.annotator_wait(annotator=request.user, taste=taste)
            return Response(status=status.HTTP_204_NO_CONTENT, headers={"X-Chisel-Waiting": reason})
        # Plain dicts in OutputSerializer's shape: serializers cost more CPU than the claim itself.
        return Response([self.output(a) for a in assignments])

    @staticmethod
    def output(assignment: Assignment) -> dict:
        pair = assignment.pair
        left, right = (pair.image_a, pair.image_b) if assignment.left_is_a else (pair.image_b, pair.image_a)
        return {
            "id": assignment.pk,
            "prompt": pair.prompt.text,
            "left": {"url": left.file.url, "width": left.width, "height": left.height},
            "right": {"url": right.file.url, "width": right.width, "height": right.height},
            "lease_expires_at": _datetime.to_representation(assignment.lease_expires_at),
        }


class JudgementCreateApi(APIView):
    """Submit a judgement on a leased pair; replaying the same `client_uuid` is safe."""

    throttle_classes, throttle_scope = [ChiselScopedThrottle], "submissions"

    @extend_schema_serializer(component_name="JudgementInput")
    class InputSerializer(serializers.Serializer):
        assignment = serializers.IntegerField()
        choice = serializers.ChoiceField(choices=services.SCREEN_CHOICES)
        flags_left = flag_field()
        flags_right = flag_field()
        duration_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000, required=False, allow_null=True)
        client_uuid = serializers.UUIDField()

    @extend_schema_serializer(component_name="Judgement")
    class OutputSerializer(serializers.Serializer):
        """As the annotator saw the screen: images A and B (which may name parent and child) stay unsaid."""

        id = serializers.IntegerField()
        assignment = serializers.IntegerField(source="assignment_id")
        choice = serializers.ChoiceField(choices=services.SCREEN_CHOICES, help_text="As on the screen.")
        flags_left = serializers.ListField(child=serializers.CharField())
        flags_right = serializers.ListField(child=serializers.CharField())
        duration_ms = serializers.IntegerField(allow_null=True)
        client_uuid = serializers.UUIDField()
        created_at = serializers.DateTimeField()
        amended_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={
            201: OutputSerializer,
            200: OpenApiResponse(OutputSerializer, description="Replay of an earlier submission."),
            403: ErrorSerializer,
            404: ErrorSerializer,
            409: ErrorSerializer,
        },
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        judgement, created = services.judgement_submit(
            annotator=request.user,
            assignment_id=data.validated_data["assignment"],
            choice=data.validated_data["choice"],
            client_uuid=data.validated_data["client_uuid"],
            flags_left=data.validated_data["flags_left"],
            flags_right=data.validated_data["flags_right"],
            duration_ms=data.validated_data.get("duration_ms"),
        )
        return Response(self.output(judgement), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @staticmethod
    def output(judgement: Judgement) -> dict:
        """OutputSerializer's shape as a plain dict (this runs on every submission)."""
        left_is_a = judgement.assignment.left_is_a
        flags_left, flags_right = (
            (judgement.flags_a, judgement.flags_b) if left_is_a else (judgement.flags_b, judgement.flags_a)
        )
        return {
            "id": judgement.pk,
            "assignment": judgement.assignment_id,
            "choice": services.to_screen(judgement.choice, left_is_a=left_is_a),
            "flags_left": list(flags_left),
            "flags_right": list(flags_right),
            "duration_ms": judgement.duration_ms,
            "client_uuid": str(judgement.client_uuid),
            "created_at": _datetime.to_representation(judgement.created_at),
            "amended_at": _datetime.to_representation(judgement.amended_at) if judgement.amended_at else None,
        }


class JudgementAmendApi(APIView):
    """Change your judgement of an assignment while its lease runs (the page's undo); idempotent."""

    throttle_classes, throttle_scope = [ChiselScopedThrottle], "submissions"

    @extend_schema_serializer(component_name="JudgementAmendInput")
    class InputSerializer(serializers.Serializer):
        choice = serializers.ChoiceField(choices=services.SCREEN_CHOICES)
        flags_left = flag_field()
        flags_right = flag_field()
        duration_ms = serializers.IntegerField(min_value=0, max_value=24 * 3600 * 1000, required=False, allow_null=True)

    @extend_schema(
        request=InputSerializer,
        responses={200: JudgementCreateApi.OutputSerializer, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer},
    )
    def put(self, request: Request, assignment_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        judgement = services.judgement_amend(
            annotator=request.user,
            assignment_id=assignment_id,
            choice=data.validated_data["choice"],
            flags_left=data.validated_data["flags_left"],
            flags_right=data.validated_data["flags_right"],
            duration_ms=data.validated_data.get("duration_ms"),
        )
        return Response(JudgementCreateApi.output(judgement))


class AssignmentSkipApi(APIView):
    """Give a leased pair back without judging it; it is not offered to you again."""

    throttle_classes, throttle_scope = [ChiselScopedThrottle], "submissions"

    @extend_schema(request=None, responses={204: None, 403: ErrorSerializer, 404: ErrorSerializer, 409: ErrorSerializer})
    def post(self, request: Request, assignment_id: int) -> Response:
        services.assignment_skip(annotator=request.user, assignment_id=assignment_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeApi(APIView):
    """Who you are, your tastes, and how many judgements you made today and in all."""

    @extend_schema_serializer(component_name="Me")
    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        is_lead = serializers.BooleanField()
        judged_today = serializers.IntegerField()
        judged_total = serializers.IntegerField()
        tastes = inline_serializer(
            "MeTaste",
            {
                "slug": serializers.SlugField(),
                "name": serializers.CharField(),
                "judged_today": serializers.IntegerField(),
                "judged_total": serializers.IntegerField(),
                "round": inline_serializer(
                    "MeRound",
                    {
                        "id": serializers.IntegerField(),
                        "number": serializers.IntegerField(),
                        "state": serializers.CharField(),
                        "judged": serializers.IntegerField(help_text="Your judgements in this round."),
                    },
                    allow_null=True,
                ),
            },
            many=True,
        )

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(selectors.annotator_profile(annotator=request.user)).data)


class TasteListApi(APIView):
    """Every taste with its cohort and label counts (leads only)."""

    permission_classes = [IsLead]

    @extend_schema_serializer(component_name="TasteSummary")
    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        annotator_count = serializers.IntegerField()
        open_round_count = serializers.IntegerField()
        current_checkpoint = serializers.IntegerField(source="current_checkpoint_id", allow_null=True)

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(selectors.taste_overview(), many=True).data)


class TasteDetailApi(APIView):
    """One taste's label counts (leads only)."""

    permission_classes = [IsLead]

    @extend_schema_serializer(component_name="TasteCounts")
    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        pairs = serializers.IntegerField()
        complete_pairs = serializers.IntegerField()
        judgements = serializers.IntegerField()
        judgements_last_24h = serializers.IntegerField()

    @extend_schema(responses={200: OutputSerializer, 404: ErrorSerializer})
    def get(self, request: Request, slug: str) -> Response:
        taste = selectors.taste_by_slug(slug=slug)
        return Response(self.OutputSerializer({"slug": taste.slug, **selectors.taste_label_counts(taste=taste)}).data)
