"""Onboarding annotators: enrolment in tastes, one-time invite links, passwords checked by Django's validators."""

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from rest_framework.authtoken.models import Token

from annotate.errors import DomainError
from annotate.models import Taste, TasteMembership


class InviteTokenGenerator(PasswordResetTokenGenerator):
    """One-time invite tokens: they hash the user's password, so setting one spends the link; they expire after
    settings.PASSWORD_RESET_TIMEOUT. Their own salt keeps them apart from password-reset tokens."""

    key_salt = "chisel.onboarding.InviteTokenGenerator"


invite_tokens = InviteTokenGenerator()


def password_check(*, password: str, user: AbstractBaseUser) -> None:
    """Refuse `password` for `user` with one line when Django's password validators (settings) reject it."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise DomainError(f"Password refused: {' '.join(exc.messages)}") from exc


def password_set(*, user: AbstractBaseUser, password: str) -> None:
    """Set a checked password on `user`."""
    password_check(password=password, user=user)
    user.set_password(password)
    user.save(update_fields=["password"])


def password_generate(*, user: AbstractBaseUser) -> str:
    """A random password (shown to the lead once), set on `user`."""
    password = secrets.token_urlsafe(12)
    password_set(user=user, password=password)
    return password


def invite_path(*, user: AbstractBaseUser) -> str:
    """The path of a one-time link where `user` sets their own password; it stops working once used."""
    return reverse("invite", args=[urlsafe_base64_encode(force_bytes(user.pk)), invite_tokens.make_token(user)])


@dataclass
class Enrolment:
    """An annotator after enrolment: created now or already there, with their API token."""

    user: AbstractBaseUser
    token: str
    created: bool
    joined: list[str]  # slugs of the tastes they were added to now


def annotator_enrol(*, username: str, tastes: Iterable[Taste], password: str | None = None) -> Enrolment:
    """Add `username` to the cohorts of `tastes`, creating them (not staff) if new; an existing user keeps their
    password unless `password` is given. Every password is checked by the validators; nothing is written on refusal."""
    User = get_user_model()
    tastes = list(tastes)
    with transaction.atomic():
        user = User.objects.filter(username=username).first()
        created = user is None
        if created:
            user = User(username=username)
            _username_check(user)
            if password:
                password_check(password=password, user=user)
                user.set_password(password)
            else:
                user.set_unusable_password()
            user.save()
        elif password:
            password_set(user=user, password=password)
        member_of = set(TasteMembership.objects.filter(annotator=user).values_list("taste_id", flat=True))
        new = [taste for taste in tastes if taste.pk not in member_of]
        TasteMembership.objects.bulk_create(TasteMembership(taste=taste, annotator=user) for taste in new)
        token, _ = Token.objects.get_or_create(user=user)
    return Enrolment(user=user, token=token.key, created=created, joined=[taste.slug for taste in new])


def _username_check(user: AbstractBaseUser) -> None:
    try:
        user.clean_fields(exclude=[f.name for f in user._meta.fields if f.name != user.USERNAME_FIELD])
    except ValidationError as exc:
        raise DomainError(f"Username refused: {' '.join(exc.messages)}") from exc


@dataclass
class Onboarded:
    """What a lead is shown, once, after adding someone to a taste."""

    enrolment: Enrolment
    invite_path: str = ""
    password: str = ""

    @property
    def kept_password(self) -> bool:
        return not (self.invite_path or self.password)


def annotators_onboard(
    *, usernames: list[str], taste: Taste, credential: str, reset_existing: bool = False
) -> list[Onboarded]:
    """Add `usernames` to `taste`'s cohort (creating new ones); new users, users without a password (and, with
    `reset_existing`, everyone) get an invite link (`credential="invite"`) or a generated password ("password")."""
    if credential not in ("invite", "password"):
        raise DomainError(f"Unknown credential '{credential}': use 'invite' or 'password'.")
    done = []
    with transaction.atomic():
        for username in usernames:
            enrolment = annotator_enrol(username=username, tastes=[taste])
            user = enrolment.user
            if not (enrolment.created or reset_existing or not user.has_usable_password()):
                done.append(Onboarded(enrolment=enrolment))
            elif credential == "invite":
                done.append(Onboarded(enrolment=enrolment, invite_path=invite_path(user=user)))
            else:
                done.append(Onboarded(enrolment=enrolment, password=password_generate(user=user)))
    return done
