from django.db import migrations, models


def flag_requests_with_flagged_outputs(apps, schema_editor):
    ImageRequest = apps.get_model("imagereview", "ImageRequest")
    Asset = apps.get_model("imagereview", "Asset")
    flagged = Asset.objects.filter(kind="output", flagged=True).values("request_id")
    ImageRequest.objects.filter(pk__in=flagged).update(flagged=True)


class Migration(migrations.Migration):
    dependencies = [
        ("imagereview", "0013_callback_hardening"),
    ]

    operations = [
        migrations.AddField(
            model_name="imagerequest",
            name="flagged",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(flag_requests_with_flagged_outputs, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="imagerequest",
            index=models.Index(
                fields=["status", "created_at", "id"],
                condition=models.Q(flagged=True),
                name="request_flagged_queue_idx",
            ),
        ),
    ]
