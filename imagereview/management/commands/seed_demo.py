"""Create the demo accounts (requester, reviewer, admin) and say how to log in."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from imagereview.models import Stage, Workflow
from imagereview.roles import REQUESTERS, REVIEWERS

DEMO_ACCOUNTS = [
    # username, password, groups, is_superuser
    ("requester", "requester-demo", [REQUESTERS], False),
    ("reviewer", "reviewer-demo", [REVIEWERS], False),
    ("admin", "admin-demo", [REQUESTERS, REVIEWERS], True),
]
# A two-stage workflow to choose on the request form (not the default, so a request made
# without choosing is reviewed in one stage): the demo reviewer decides Creative, the admin
# (who, as a superuser, may decide any stage) Brand and legal.
DEMO_WORKFLOW = "Creative, then Brand and legal"
DEMO_STAGES = [
    # position, name, group, members
    (1, "Creative", "Creative", ["reviewer"]),
    (2, "Brand and legal", "Brand and legal", ["admin"]),
]


class Command(BaseCommand):
    help = "Create the demo accounts (safe to run again) and print how to log in."

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError("Demo accounts with known passwords are not for production.")
        User = get_user_model()
        for username, password, groups, superuser in DEMO_ACCOUNTS:
            user, created = User.objects.get_or_create(username=username)
            if created:
                user.set_password(password)
            user.is_staff = user.is_superuser = superuser
            user.save()
            for name in groups:
                user.groups.add(Group.objects.get_or_create(name=name)[0])
        self._seed_workflow()
        self.stdout.write(f"\nimagereview is starting at {settings.PUBLIC_BASE_URL}/")
        self.stdout.write("Log in with one of these demo accounts:")
        for username, password, groups, superuser in DEMO_ACCOUNTS:
            role = "admin (Django admin too)" if superuser else ", ".join(groups)
            self.stdout.write(f"  {username:<10} password {password:<16} {role}")
        self.stdout.write(
            f"Choose the workflow “{DEMO_WORKFLOW}” on the request form to try review stages."
        )
        self.stdout.write("Stop everything with Ctrl-C.\n")

    def _seed_workflow(self) -> None:
        workflow, _ = Workflow.objects.get_or_create(
            name=DEMO_WORKFLOW,
            defaults={"description": "Creative reviews first; brand and legal sign off."},
        )
        User = get_user_model()
        for position, name, group_name, members in DEMO_STAGES:
            group = Group.objects.get_or_create(name=group_name)[0]
            for user in User.objects.filter(username__in=members):
                user.groups.add(group)
            Stage.objects.get_or_create(
                workflow=workflow, position=position, defaults={"name": name, "reviewers": group}
            )
