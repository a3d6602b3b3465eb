"""Create the demo accounts (requester, reviewer, admin) and say how to log in."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from imagereview.roles import REQUESTERS, REVIEWERS

DEMO_ACCOUNTS = [
    # username, password, groups, is_superuser
    ("requester", "requester-demo", [REQUESTERS], False),
    ("reviewer", "reviewer-demo", [REVIEWERS], False),
    ("admin", "admin-demo", [REQUESTERS, REVIEWERS], True),
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
        self.stdout.write(f"\nimagereview is starting at {settings.PUBLIC_BASE_URL}/")
        self.stdout.write("Log in with one of these demo accounts:")
        for username, password, groups, superuser in DEMO_ACCOUNTS:
            role = "admin (Django admin too)" if superuser else ", ".join(groups)
            self.stdout.write(f"  {username:<10} password {password:<16} {role}")
        self.stdout.write("Stop everything with Ctrl-C.\n")
