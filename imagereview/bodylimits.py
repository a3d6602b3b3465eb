"""How large a request body may be, refused by its declared length before anything reads it.

Django reads a whole body as soon as anything looks at request.POST (CSRF checking does, for
every POST), so a stranger could make every process read hundreds of megabytes before being
sent to the login page. The middleware answers 413 from the Content-Length header alone;
within an allowed body, the upload handler drops any one file that grows past its own cap.
"""

from collections.abc import Callable

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

# Pages whose form carries files larger than the default allows, by URL name.
UPLOAD_PAGES = ("new_edit",)
# The API applies its own caps (per kind of body, answered as a problem document).
API_NAMESPACE = "api-v1"


def body_cap(request: HttpRequest) -> int | None:
    """The largest body this request may declare; None where the view keeps its own cap."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return settings.REQUEST_MAX_ANONYMOUS_BODY_BYTES
    if API_NAMESPACE in match.namespaces:
        return None
    if not request.user.is_authenticated:
        return settings.REQUEST_MAX_ANONYMOUS_BODY_BYTES
    if match.url_name in UPLOAD_PAGES:
        return settings.REQUEST_MAX_UPLOAD_BODY_BYTES
    return settings.REQUEST_MAX_BODY_BYTES


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(int(request.META.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


class RequestBodyLimitMiddleware:
    """Answer 413 to a body declared over its page's cap (after authentication, which reads
    only the session cookie, so that signed-in uploads get their larger allowance)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = _declared_length(request)
        if declared:
            cap = body_cap(request)
            if cap is not None and declared > cap:
                return HttpResponse(
                    f"The request body is {declared:,} bytes, over the limit of {cap:,} bytes "
                    "for this page.\n",
                    status=413,
                    content_type="text/plain; charset=utf-8",
                )
        return self.get_response(request)


class FileSizeCapUploadHandler(FileUploadHandler):
    """Drop a file once it passes UPLOAD_MAX_FILE_BYTES, so that one file cannot fill the
    whole allowance of a page that takes several; its name is kept on the request, for the
    form to say which file was too large (`too_large_uploads`)."""

    def new_file(self, *args: object, **kwargs: object) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.UPLOAD_MAX_FILE_BYTES:
            if self.request is not None:
                dropped = getattr(self.request, "too_large_uploads", [])
                self.request.too_large_uploads = [*dropped, self.file_name or "a file"]
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def too_large_uploads(request: HttpRequest) -> list[str]:
    """The names of the files of this request the upload handler dropped for their size."""
    return list(getattr(request, "too_large_uploads", []))
