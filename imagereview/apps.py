from django.apps import AppConfig


class ImageReviewConfig(AppConfig):
    name = "imagereview"
    verbose_name = "Image review"
    default_auto_field = "django.db.models.BigAutoField"
