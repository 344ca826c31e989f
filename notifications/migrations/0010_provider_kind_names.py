"""One concept, one name: a provider *key* (a configured provider) vs a provider *kind* (twilio,
fcm…). Columns that hold a kind are named provider_kind."""

import django.core.validators
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("notifications", "0009_run_step_refs"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="channeldata", name="channeldata_unique"),
        migrations.RenameField(model_name="channeldata", old_name="provider",
                               new_name="provider_kind"),
        migrations.AlterField(
            model_name="channeldata", name="provider_kind",
            field=models.CharField(blank=True, max_length=64, help_text=(
                "Only for providers of this kind (fcm, apns…); blank: for any of the channel.")),
        ),
        migrations.AddConstraint(
            model_name="channeldata",
            constraint=models.UniqueConstraint(fields=["recipient", "channel", "provider_kind"],
                                               name="channeldata_unique"),
        ),
        migrations.RenameField(model_name="deliveryattempt", old_name="kind",
                               new_name="provider_kind"),
        migrations.AlterField(
            model_name="deliveryattempt", name="provider_kind",
            field=models.CharField(blank=True, max_length=64,
                                   help_text="The provider kind: twilio, postmark, fcm…"),
        ),
        migrations.AlterField(
            model_name="deliveryattempt", name="provider",
            field=models.CharField(max_length=128, help_text=(
                "The provider key: a configured provider's, or a built-in default's (smtp, "
                "webhook).")),
        ),
        migrations.RemoveConstraint(model_name="messageevent", name="messageevent_once"),
        migrations.RenameField(model_name="messageevent", old_name="provider",
                               new_name="provider_kind"),
        migrations.AlterField(
            model_name="messageevent", name="provider_kind",
            field=models.CharField(max_length=64,
                                   help_text="The provider kind that reported it: twilio…"),
        ),
        migrations.AddConstraint(
            model_name="messageevent",
            constraint=models.UniqueConstraint(fields=["provider_kind", "event_id"],
                                               name="messageevent_once"),
        ),
        migrations.AlterField(
            model_name="providerconfig", name="key",
            field=models.CharField(max_length=128, unique=True, validators=[
                django.core.validators.RegexValidator(
                    "^[a-zA-Z0-9][a-zA-Z0-9_.:-]{0,127}$",
                    "Use letters, digits, '-', '_', '.', ':' (up to 128, starting with a letter "
                    "or digit).")],
                help_text="The provider key: how messages, callbacks and the API name this "
                          "provider."),
        ),
        migrations.AlterField(
            model_name="providerconfig", name="kind",
            field=models.CharField(max_length=64, help_text=(
                "The provider kind: which service it is (twilio, vonage, slack_webhook, "
                "smtp…).")),
        ),
    ]
