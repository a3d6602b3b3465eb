from django.apps import AppConfig


class ImageReviewConfig(AppConfig):
    name = "imagereview"
    verbose_name = "Image review"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from imagereview import checks  # noqa: F401  (registers the deployment checks)
