"""Lead endpoints on a taste's annotators: the annotator table, agreement matrix, α and camps; gold answers."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate import gold, selectors
from annotate.annotator_stats import taste_annotator_stats
from annotate.api.permissions import IsLead
from annotate.api.views import ErrorSerializer


@extend_schema_serializer(component_name="AnnotatorStats")
class AnnotatorRowSerializer(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    member = serializers.BooleanField(help_text="Whether the annotator is in the taste's cohort now.")
    judged = serializers.IntegerField()
    skipped = serializers.IntegerField()
    skip_rate = serializers.FloatField(allow_null=True)
    agreement = serializers.FloatField(allow_null=True, help_text="Share of answers matching the other annotators' on the same pairs (a, b, tie are categories; both-bad left out).")
    agreement_compared = serializers.IntegerField(help_text="Answer pairs the agreement is over.")
    camp_agreement = serializers.FloatField(allow_null=True, help_text="Agreement with the annotator's own camp.")
    camp_compared = serializers.IntegerField()
    gold_answered = serializers.IntegerField()
    gold_correct = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    gold_interval = serializers.ListField(child=serializers.FloatField(), allow_null=True, help_text="95% Wilson interval.")
    left_share = serializers.FloatField(allow_null=True, help_text="Share of sided answers that took the left image.")
    left_p_value = serializers.FloatField(allow_null=True, help_text="Two-sided binomial test against 1/2.")
    median_ms = serializers.FloatField(allow_null=True)
    too_fast_share = serializers.FloatField(allow_null=True, help_text="Share of answers faster than the taste's speed floor.")
    flag_rate = serializers.FloatField(allow_null=True)
    longest_streak = serializers.IntegerField(help_text="Longest run of one screen answer (left, right, tie, both bad).")
    trust = serializers.FloatField(
        help_text="(gold correct + 1)/(gold answered + 2) × (agreeing + 1)/(compared + 2), agreement within the camp."
    )
    camp = serializers.IntegerField(allow_null=True)
    sparkline = serializers.ListField(child=serializers.FloatField(allow_null=True))
    flags = serializers.ListField(child=serializers.CharField(), help_text="Why the row is flagged, if it is.")


@extend_schema_serializer(component_name="Camp")
class CampSerializer(serializers.Serializer):
    camp = serializers.IntegerField()
    usernames = serializers.ListField(child=serializers.CharField())
    annotator_ids = serializers.ListField(child=serializers.IntegerField())
    alpha = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="Camps")
class CampsSerializer(serializers.Serializer):
    split = serializers.BooleanField(help_text="True when the taste holds two or more camps.")
    rule = serializers.CharField()
    within_agreement = serializers.FloatField(allow_null=True)
    across_agreement = serializers.FloatField(allow_null=True)
    alpha = serializers.FloatField(allow_null=True)
    camps = CampSerializer(many=True)


@extend_schema_serializer(component_name="AgreementMatrix")
class MatrixSerializer(serializers.Serializer):
    usernames = serializers.ListField(child=serializers.CharField())
    agreement = serializers.ListField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)))
    shared = serializers.ListField(child=serializers.ListField(child=serializers.IntegerField()))


@extend_schema_serializer(component_name="TasteAnnotators")
class TasteAnnotatorsSerializer(serializers.Serializer):
    taste = serializers.SlugField()
    round = serializers.IntegerField(allow_null=True)
    judgements = serializers.IntegerField()
    annotators = AnnotatorRowSerializer(many=True)
    alpha = serializers.FloatField(allow_null=True, help_text="Krippendorff's α (nominal) over every overlapping pair.")
    alpha_by_round = serializers.DictField(child=serializers.FloatField(allow_null=True))
    matrix = MatrixSerializer()
    camps = CampsSerializer()


class TasteAnnotatorsApi(APIView):
    """A taste's annotators with agreement, gold accuracy, behaviour, trust and camps (leads only)."""

    permission_classes = [IsLead]

    @extend_schema(
        parameters=[OpenApiParameter("round", int, description="a round's id: figures of that round only")],
        responses={200: TasteAnnotatorsSerializer, 404: ErrorSerializer},
    )
    def get(self, request: Request, slug: str) -> Response:
        taste = selectors.taste_by_slug(slug=slug)
        round_id = request.query_params.get("round")
        stats = taste_annotator_stats(taste=taste, round_id=int(round_id) if round_id and round_id.isdigit() else None)
        return Response(TasteAnnotatorsSerializer(stats).data)


class PairGoldApi(APIView):
    """Set (PUT) or clear (DELETE) a pair's gold answer (leads only)."""

    permission_classes = [IsLead]

    @extend_schema_serializer(component_name="PairGoldInput")
    class InputSerializer(serializers.Serializer):
        choice = serializers.ChoiceField(choices=list(gold.GOLD_CHOICES))

    @extend_schema_serializer(component_name="PairGold")
    class OutputSerializer(serializers.Serializer):
        pair_id = serializers.IntegerField(source="pk")
        kind = serializers.CharField()
        gold_choice = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={200: OutputSerializer, 404: ErrorSerializer})
    def put(self, request: Request, pair_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pair = gold.pair_mark_gold(pair_id=pair_id, choice=data.validated_data["choice"])
        return Response(self.OutputSerializer(pair).data)

    @extend_schema(responses={204: None, 404: ErrorSerializer})
    def delete(self, request: Request, pair_id: int) -> Response:
        gold.pair_unmark_gold(pair_id=pair_id)
        return Response(status=204)
