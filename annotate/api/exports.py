"""Lead endpoints for dataset exports: request one, watch it, download it."""

from pathlib import PurePosixPath

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotate.api.permissions import IsLead
from annotate.api.throttles import ChiselScopedThrottle
from annotate.api.views import ErrorSerializer
from annotate.errors import NotFound
from annotate.export_jobs import export_file, export_request
from annotate.models import Export, Pair


@extend_schema_serializer(component_name="Export")
class ExportOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    options = serializers.JSONField()
    summary = serializers.JSONField()
    error = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    download_url = serializers.SerializerMethodField()

    def get_download_url(self, export: Export) -> str | None:
        if export.state != Export.State.DONE:
            return None
        return reverse("export-download", args=[export.pk])


def _export(export_id: int) -> Export:
    export = Export.objects.filter(pk=export_id).first()
    if export is None:
        raise NotFound(f"There is no export {export_id}.")
    return export


class ExportCreateApi(APIView):
    """Queue an export of judgements as a preference dataset (leads only; a few at a time per lead)."""

    permission_classes = [IsLead]
    throttle_classes, throttle_scope = [ChiselScopedThrottle], "exports"

    @extend_schema_serializer(component_name="ExportRequest")
    class InputSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=["pickapic", "jsonl"], default="pickapic")
        aggregate = serializers.ChoiceField(choices=["none", "majority"], default="none")
        ties = serializers.ChoiceField(choices=["drop", "keep"], default="drop")
        image_format = serializers.ChoiceField(choices=["original", "jpeg"], default="original")
        tastes = serializers.ListField(child=serializers.SlugField(), required=False, default=list)
        rounds = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
        annotators = serializers.ListField(child=serializers.CharField(), required=False, default=list)
        kinds = serializers.ListField(child=serializers.ChoiceField(choices=Pair.Kind.values), required=False,
                                      default=list)
        since = serializers.DateTimeField(required=False, allow_null=True)
        until = serializers.DateTimeField(required=False, allow_null=True)

    @extend_schema(request=InputSerializer, responses={
        202: ExportOutputSerializer,
        429: OpenApiResponse(ErrorSerializer, description="Too many requests, or `too_many_exports`: the lead "
                             "already has CHISEL_MAX_ACTIVE_EXPORTS exports queued or running."),
    })
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = export_request(user=request.user, options=data.validated_data)
        return Response(ExportOutputSerializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetailApi(APIView):
    """An export's state, progress and, once done, its download link (leads only)."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: ExportOutputSerializer, 404: ErrorSerializer})
    def get(self, request: Request, export_id: int) -> Response:
        return Response(ExportOutputSerializer(_export(export_id)).data)


class ExportDownloadApi(APIView):
    """The exported file (leads only)."""

    permission_classes = [IsLead]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(description="The dataset file."),
                              404: ErrorSerializer})
    def get(self, request: Request, export_id: int):
        export = _export(export_id)
        handle = export_file(export)
        if handle is None:
            raise NotFound(f"Export {export_id} has no file to download (yet).")
        suffix = PurePosixPath(export.file_name).suffix
        return FileResponse(handle, as_attachment=True, filename=f"chisel-export-{export_id}{suffix}")
