from django.db import migrations

NAME = "refresh daily figures"


def add_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name=NAME,
        defaults={
            "func": "imagereview.tasks.refresh_figures",
            "schedule_type": "I",
            "minutes": 1,
            "repeats": -1,
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("imagereview", "0011_figures_and_api")]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
