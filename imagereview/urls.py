from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from imagereview import api
from imagereview.views import (
    alerts,
    assets,
    batch,
    callbacks,
    library,
    notifications,
    operations,
    publishing,
    requests,
    review,
    tokens,
    webhooks,
)

urlpatterns = [
    # First: the provider calls it once per task, more often than people open any page.
    path(
        "callbacks/kie/<int:generation_id>/<str:token>/",
        callbacks.provider_callback,
        name="provider_callback",
    ),
    path("", requests.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("requests/", requests.my_requests, name="my_requests"),
    path("requests/new/", requests.new_request, name="new_request"),
    path("requests/new/edit/", requests.new_edit, name="new_edit"),
    path("requests/batch/", batch.import_batch, name="import_batch"),
    path("requests/<int:request_id>/", requests.request_detail, name="request_detail"),
    path("review/", review.review_queue, name="review_queue"),
    path("review/<int:request_id>/", review.review_detail, name="review_detail"),
    path("review/<int:request_id>/claim/", review.claim, name="claim_review"),
    path("review/<int:request_id>/release/", review.release_claim, name="release_review"),
    path("review/bulk/", review.bulk_decide, name="bulk_decide"),
    path("review/outputs/<int:output_id>/decide/", review.decide, name="decide"),
    path("review/outputs/<int:output_id>/changes/", review.request_changes, name="request_changes"),
    path("review/decisions/<int:decision_id>/undo/", review.undo, name="undo_decision"),
    path("library/", library.library, name="library"),
    path("library/export/", library.export_zip, name="library_export"),
    path("library/publish/", library.publish_selected, name="library_publish"),
    path("assets/<int:asset_id>/<str:variant>/", assets.asset_file, name="asset_file"),
    path("outputs/<int:output_id>/publish/", publishing.publish_output, name="publish_output"),
    path(
        "outputs/<int:output_id>/publication/",
        publishing.publication_panel,
        name="publication_panel",
    ),
    path(
        "publications/<int:publication_id>/retract/",
        publishing.retract_publication,
        name="retract_publication",
    ),
    path(
        "publications/<int:publication_id>/file/",
        publishing.published_file,
        name="published_file",
    ),
    path("operations/resume/", operations.resume_submissions, name="resume_submissions"),
    path("operations/alerts/", alerts.alert_list, name="alerts"),
    path(
        "operations/alerts/<int:alert_id>/acknowledge/",
        alerts.acknowledge,
        name="acknowledge_alert",
    ),
    path("operations/", operations.dashboard, name="operations"),
    path("operations/cost.csv", operations.cost_csv, name="operations_cost_csv"),
    path(
        "operations/generations/<int:generation_id>/<str:action>/",
        operations.generation_action,
        name="operations_generation_action",
    ),
    path("webhooks/", webhooks.endpoint_list, name="webhook_endpoints"),
    path("webhooks/new/", webhooks.new_endpoint, name="new_webhook_endpoint"),
    path("webhooks/<int:endpoint_id>/", webhooks.endpoint_detail, name="webhook_endpoint"),
    path(
        "webhooks/<int:endpoint_id>/rotate/", webhooks.rotate_secret, name="rotate_webhook_secret"
    ),
    path(
        "webhooks/<int:endpoint_id>/redeliver/",
        webhooks.redeliver_failed,
        name="redeliver_failed_webhooks",
    ),
    path(
        "webhooks/deliveries/<int:delivery_id>/redeliver/",
        webhooks.redeliver,
        name="redeliver_webhook",
    ),
    path("notifications/", notifications.notification_list, name="notifications"),
    path("notifications/read/", notifications.mark_all_read, name="mark_notifications_read"),
    path(
        "notifications/settings/",
        notifications.notification_settings,
        name="notification_settings",
    ),
    path(
        "notifications/<int:notification_id>/",
        notifications.open_notification,
        name="open_notification",
    ),
    path("account/tokens/", tokens.token_list, name="api_tokens"),
    path("account/tokens/new/", tokens.new_token, name="new_api_token"),
    path("account/tokens/<int:token_id>/revoke/", tokens.revoke, name="revoke_api_token"),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]
