"""django-q2 entry points: take ids, take the process's provider client, call the action.

Every one is safe to run twice: the actions re-read the row and do nothing when its state
has moved on.
"""

from imagereview import actions
from imagereview.actions import webhooks
from imagereview.providers.kie import shared_client


def submit_generation(generation_id: int, slot_at: float | None = None) -> None:
    actions.submit_generation(generation_id=generation_id, client=shared_client(), slot_at=slot_at)


def refresh_generation(generation_id: int) -> None:
    """Apply the task's state and, when it has just succeeded, store its outputs in the same
    job: a second trip through the broker would only add its wait."""
    client = shared_client()
    if actions.refresh_generation(generation_id=generation_id, client=client):
        actions.store_outputs(generation_id=generation_id, client=client)


def store_outputs(generation_id: int) -> None:
    actions.store_outputs(generation_id=generation_id, client=shared_client())


def reconcile() -> dict[str, int]:
    return actions.reconcile(client=shared_client())


def publish_output(publication_id: int) -> None:
    from imagereview.actions import publishing

    publishing.run_publication(publication_id=publication_id)


def withdraw_publication(publication_id: int) -> None:
    from imagereview.actions import publishing

    publishing.withdraw(publication_id=publication_id)


def deliver_webhook(delivery_id: int) -> None:
    webhooks.deliver(delivery_id=delivery_id)


def check_drift() -> None:
    from imagereview.actions import alerts

    alerts.check_drift()


def send_review_digests() -> None:
    from imagereview.actions import notifications

    notifications.send_review_digests()
    notifications.email_due_notifications()
    notifications.resend_lost_emails()


def send_notification_email(notification_id: int) -> None:
    from imagereview.actions import emails

    emails.send_email(notification_id=notification_id)


def notify_request_decided(image_request_id: int) -> None:
    from imagereview.actions import notifications

    notifications.notify_request_decided(image_request_id)


def notify_request_failed(image_request_id: int) -> None:
    from imagereview.actions import notifications

    notifications.notify_request_failed(image_request_id)


def refresh_figures() -> None:
    from imagereview.actions import figures

    figures.refresh()
