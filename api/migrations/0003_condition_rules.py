"""Bars by the trade-condition rules: prices may be NULL (no print was eligible
for them), and each bar counts its high/low-eligible prints. Bars stored before
were built from every print, so their eligible count is their tick count."""

from django.db import migrations, models
from django.db.models import F

from api.models import ELIGIBLE_HELP

BAR_PRICE = {"max_digits": 24, "decimal_places": 10, "null": True, "blank": True}

# (model, tick count column, eligible count column, price columns)
TABLES = (
    (
        "secondsnapshot",
        "ohlc_1sec_tick_count",
        "ohlc_1sec_eligible_count",
        ("ohlc_1sec_open", "ohlc_1sec_high", "ohlc_1sec_low", "ohlc_1sec_close"),
    ),
    ("minutesnapshot", "tick_count", "eligible_count", ("open", "high", "low", "close")),
    ("tickcandle100", "tick_count", "eligible_count", ("open", "high", "low", "close")),
)


def every_print_was_eligible(apps, schema_editor):
    for model_name, ticks, eligible, _ in TABLES:
        model = apps.get_model("api", model_name)
        model.objects.update(**{eligible: F(ticks)})


def operations():
    ops = []
    for model_name, _, eligible, prices in TABLES:
        ops.append(
            migrations.AddField(
                model_name=model_name,
                name=eligible,
                field=models.PositiveIntegerField(null=True, help_text=ELIGIBLE_HELP),
            )
        )
        ops.extend(
            migrations.AlterField(
                model_name=model_name, name=name, field=models.DecimalField(**BAR_PRICE)
            )
            for name in prices
        )
    ops.append(migrations.RunPython(every_print_was_eligible, migrations.RunPython.noop))
    ops.extend(
        migrations.AlterField(
            model_name=model_name,
            name=eligible,
            field=models.PositiveIntegerField(help_text=ELIGIBLE_HELP),
        )
        for model_name, _, eligible, _ in TABLES
    )
    return ops


class Migration(migrations.Migration):
    dependencies = [("api", "0002_minute_snapshot")]

    operations = operations()
