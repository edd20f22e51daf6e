"""The lead role: a group holding the model permissions the admin pages need, instead of superuser status."""

LEAD_GROUP = "Lead"

# (app label, model, actions). The admin classes narrow these further (history is read-only everywhere).
LEAD_PERMISSIONS = [
    ("annotate", "taste", ("add", "change", "delete", "view")),
    ("annotate", "tastemembership", ("add", "change", "delete", "view")),
    ("annotate", "basemodel", ("add", "change", "delete", "view")),
    ("annotate", "checkpoint", ("change", "view")),
    ("annotate", "prompt", ("add", "change", "delete", "view")),
    ("annotate", "round", ("add", "change", "view")),
    ("annotate", "image", ("view",)),
    ("annotate", "pair", ("view",)),
    ("annotate", "assignment", ("view",)),
    ("annotate", "judgement", ("view",)),
    ("annotate", "trainingjob", ("view",)),
    ("annotate", "export", ("add", "view")),
    # Onboarding annotators and rotating their tokens; staff and superuser status stay with superusers.
    ("auth", "user", ("add", "change", "view")),
    ("authtoken", "tokenproxy", ("view",)),
]


def lead_group_ensure(*, group_model, permission_model):
    """The Lead group with exactly LEAD_PERMISSIONS (models passed in, so a migration can use its own)."""
    group, _ = group_model.objects.get_or_create(name=LEAD_GROUP)
    wanted = [
        permission_model.objects.get(content_type__app_label=app, content_type__model=model,
                                     codename=f"{action}_{model}")
        for app, model, actions in LEAD_PERMISSIONS
        for action in actions
    ]
    group.permissions.set(wanted)
    return group


def lead_group():
    """The Lead group, made (with its permissions) if a flushed test database or a fresh one lacks it."""
    from django.contrib.auth.models import Group, Permission

    group = Group.objects.filter(name=LEAD_GROUP).first()
    return group or lead_group_ensure(group_model=Group, permission_model=Permission)
