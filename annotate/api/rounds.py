"""Lead endpoints for rounds: list a taste's rounds, show one with its progress and decision."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.permissions import IsLead
from annotate.api.views import ErrorSerializer
from annotate.errors import NotFound
from annotate.loop import round_progress
from annotate.models import Round


@extend_schema_serializer(component_name="RoundSummary")
class RoundSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    taste = serializers.SlugField(source="taste.slug")
    number = serializers.IntegerField()
    state = serializers.CharField()
    paused = serializers.BooleanField()
    parent_checkpoint = serializers.IntegerField(source="parent_checkpoint_id", allow_null=True)
    child_checkpoint = serializers.IntegerField(source="child_checkpoint_id", allow_null=True)
    pair_quota = serializers.IntegerField()
    label_quota = serializers.IntegerField()
    overlap = serializers.IntegerField()
    eval_pair_quota = serializers.IntegerField()
    promotion_threshold = serializers.FloatField()
    error = serializers.CharField()
    decision = serializers.JSONField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="RoundDetail")
class RoundDetailSerializer(RoundSummarySerializer):
    sampling_config = serializers.JSONField()
    training_config = serializers.JSONField()
    guard_rails = serializers.JSONField()
    auto_advance = serializers.BooleanField()
    progress = serializers.JSONField(help_text="Counts against quotas for sampling, annotation, training, evaluation.")


class RoundListApi(APIView):
    """Rounds, newest first, optionally of one taste (leads only)."""

    permission_classes = [IsLead]

    @extend_schema(parameters=[OpenApiParameter("taste", str, description="a taste's slug")],
                   responses=RoundSummarySerializer(many=True))
    def get(self, request: Request) -> Response:
        rounds = Round.objects.select_related("taste").order_by("-id")
        if slug := request.query_params.get("taste"):
            rounds = rounds.filter(taste__slug=slug)
        return Response(RoundSummarySerializer(rounds[:500], many=True).data)


class RoundDetailApi(APIView):
    """One round with its settings, live progress and decision (leads only)."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: RoundDetailSerializer, 404: ErrorSerializer})
    def get(self, request: Request, round_id: int) -> Response:
        round_ = Round.objects.select_related("taste").filter(pk=round_id).first()
        if round_ is None:
            raise NotFound(f"There is no round {round_id}.")
        round_.progress = round_progress(round_id=round_id)
        return Response(RoundDetailSerializer(round_).data)
