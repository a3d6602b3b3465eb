"""The provider account: the credit balance, and the circuit that halts submission.

401/402/433/505 open the circuit: queued work waits (the dispatcher sends nothing) and admins
see why. A credit check that finds the account usable again, or an admin, closes it.
"""

import logging
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from imagereview.models import Event, ProviderAccount
from imagereview.providers.errors import Action, ProviderError
from imagereview.providers.kie import KieClient

log = logging.getLogger(__name__)

PROBE_INTERVAL = timedelta(seconds=30)
# A 505 (feature disabled) says nothing a credit check can see: try real work again later.
HALF_OPEN_AFTER = timedelta(minutes=10)
CREDIT_CODES = ("402", "433")


def get_account() -> ProviderAccount:
    return ProviderAccount.objects.get_or_create(provider="kie")[0]


def _record(*, halted: bool, note: str, actor: AbstractBaseUser | None = None) -> None:
    states = ("open", "halted") if halted else ("halted", "open")
    Event.objects.create(
        subject="account",
        from_state=states[0],
        to_state=states[1],
        actor=actor,
        source="admin" if actor else "cluster",
        note=note,
    )


def open_circuit(*, code: int | str, reason: str) -> None:
    """Halt submission for the whole account; the first opener records why."""
    with transaction.atomic():
        account = get_account()
        account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        if account.circuit_open:
            return
        now = timezone.now()
        account.circuit_open = True
        account.circuit_code = str(code)
        account.circuit_reason = reason[:2000]
        account.circuit_opened_at = now
        wait = HALF_OPEN_AFTER if str(code) == "505" else PROBE_INTERVAL
        account.next_probe_at = now + wait
        account.save()
        _record(halted=True, note=f"{code}: {reason}")
    log.error("provider account halted: %s %s", code, reason)


def halt_on(error: ProviderError) -> bool:
    """Open the circuit if `error` is of the class that halts the account; say whether it is."""
    if error.action != Action.HALT:
        return False
    open_circuit(code=error.code, reason=error.message or error.meaning)
    return True


def close_circuit(*, note: str, actor: AbstractBaseUser | None = None) -> bool:
    """Let submission resume. Return whether the circuit was open."""
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().get(pk=get_account().pk)
        if not account.circuit_open:
            return False
        account.circuit_open = False
        account.on_trial = True
        account.next_probe_at = None
        account.save()
        _record(halted=False, note=note, actor=actor)
    log.warning("provider account open for work again: %s", note)
    return True


def end_trial() -> None:
    """A create was accepted: the account is proven to work again."""
    ProviderAccount.objects.filter(on_trial=True, circuit_open=False).update(on_trial=False)


def _store_balance(balance: Decimal) -> None:
    ProviderAccount.objects.filter(pk=get_account().pk).update(
        credits=balance, credits_checked_at=timezone.now()
    )


def probe_circuit(*, client: KieClient) -> bool:
    """When the circuit is open and a probe is due, check whether the account works again."""
    account = get_account()
    now = timezone.now()
    if not account.circuit_open or (account.next_probe_at and account.next_probe_at > now):
        return False
    if account.circuit_code == "505":
        return close_circuit(note="half-open: trying work again after a 505")
    ProviderAccount.objects.filter(pk=account.pk).update(next_probe_at=now + PROBE_INTERVAL)
    try:
        balance = client.credit_balance()
    except ProviderError as error:
        log.info("credit probe still failing: %s", error)
        return False
    _store_balance(balance)
    cheapest = min(settings.KIE_PRICES.values())
    if account.circuit_code in CREDIT_CODES and balance < cheapest:
        return False
    return close_circuit(note=f"credit check answered {balance} credits")


def ensure_credits(*, client: KieClient, price: int) -> str:
    """Make sure the balance covers `price` before a submission, and count it as spent.

    Return "" when the submission may go ahead, else why it must wait. The balance is
    asked again when it is unknown, old, or seems too low.
    """
    account = get_account()
    if account.circuit_open:
        return f"submissions are halted: {account.circuit_code} {account.circuit_reason}"
    max_age = timedelta(seconds=settings.KIE_CREDITS_MAX_AGE)
    fresh = account.credits_checked_at and timezone.now() - account.credits_checked_at < max_age
    if account.credits is None or not fresh or account.credits < price:
        try:
            balance = client.credit_balance()
        except ProviderError as error:
            if halt_on(error):
                return f"submissions are halted: {error.code}"
            return f"credit balance unknown: {error}"
        _store_balance(balance)
        if balance < price:
            open_circuit(code=402, reason=f"the balance of {balance} credits is below {price}")
            return "insufficient credits"
    # Our estimate until the next check; the provider's own figure replaces it then.
    ProviderAccount.objects.filter(pk=account.pk).update(credits=F("credits") - price)
    return ""
