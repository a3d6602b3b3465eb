from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imagereview", "0015_review_round_two"),
    ]

    operations = [
        migrations.AddField(
            model_name="decision",
            name="batch",
            field=models.UUIDField(blank=True, db_index=True, null=True),
        ),
    ]
