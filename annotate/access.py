"""The security funnel: every "may this user see or touch this object" decision lives here."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection

from annotate.errors import Forbidden, NotFound
from annotate.models import Assignment, Image, Pair, Taste, TasteMembership


def user_is_lead(user: AbstractBaseUser | None) -> bool:
    """Leads are active staff users: they run rounds, see every taste, and use the admin."""
    return bool(user and user.is_authenticated and user.is_active and user.is_staff)


_TASTE_WITH_MEMBERSHIP = (
    f"SELECT t.*, EXISTS(SELECT 1 FROM {TasteMembership._meta.db_table} m WHERE m.taste_id = t.id"
    f" AND m.annotator_id = %(user)s) AS is_member FROM {Taste._meta.db_table} t WHERE t.slug = %(slug)s"
)


def access_taste_for_annotation(*, user: AbstractBaseUser, slug: str) -> Taste:
    """The taste `slug` if `user` belongs to its cohort; only members annotate a taste."""
    # One plain query: this check runs on every claim of every annotator.
    taste = next(iter(Taste.objects.raw(_TASTE_WITH_MEMBERSHIP, {"slug": slug, "user": user.pk})), None)
    if taste is None:
        raise NotFound(f"There is no taste '{slug}'.")
    if not taste.is_member:
        raise Forbidden(f"You are not in the cohort of taste '{slug}'.")
    return taste


def access_own_assignment(*, user: AbstractBaseUser, assignment: Assignment | None, assignment_id: int) -> Assignment:
    """`assignment` if it exists and was handed to `user`; the caller has loaded (and locked) it."""
    if assignment is None:
        raise NotFound(f"There is no assignment {assignment_id}.")
    if assignment.annotator_id != user.pk:
        raise Forbidden(f"Assignment {assignment_id} was handed to another annotator.")
    return assignment


_IMAGE_IN_MEMBERS_TASTE = (
    f"SELECT EXISTS(SELECT 1 FROM {Image._meta.db_table} i"
    f" JOIN {Pair._meta.db_table} p ON p.image_a_id = i.id OR p.image_b_id = i.id"
    f" JOIN {TasteMembership._meta.db_table} m ON m.taste_id = p.taste_id AND m.annotator_id = %s"
    " WHERE i.file = %s)"
)


def access_image_file(*, user: AbstractBaseUser, name: str) -> bool:
    """Whether `user` may see the stored image `name`: leads see all, annotators the pairs of their tastes."""
    if user_is_lead(user):
        return True
    # One indexed query (image by file, pairs by image, membership by taste and user) on every image load.
    with connection.cursor() as cursor:
        cursor.execute(_IMAGE_IN_MEMBERS_TASTE, [user.pk, name])
        return bool(cursor.fetchone()[0])
