"""The Lead group: leads get the admin's model permissions instead of superuser status."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from annotate.roles import LEAD_GROUP, lead_group_ensure


def forwards(apps, schema_editor):
    # Permissions are normally made after all migrations ran; make them now so the group can hold them.
    for label in ("annotate", "auth", "authtoken"):
        app_config = apps.get_app_config(label)
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    group = lead_group_ensure(group_model=apps.get_model("auth", "Group"),
                              permission_model=apps.get_model("auth", "Permission"))
    # Existing leads (staff) join the group; taking back their superuser status is left to a superuser.
    User = apps.get_model("auth", "User")
    group.user_set.add(*User.objects.filter(is_staff=True))


def backwards(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=LEAD_GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("annotate", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
