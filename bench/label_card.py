"""Time the labeling card (docs/platform.md, "The labeling page") on a campaign of N items
with L labels: its campaign progress ("items fully labeled") is read on every render.

    .venv/bin/python -m bench.label_card --n 1000000 --labels 100000                 # SQLite
    scripts/with-postgres.sh .venv/bin/python -m bench.label_card --n 1000000 --labels 100000

Builds a throwaway test database with one campaign (bulk_create; overlap 1, labels on L
distinct items by 20 annotators), then renders the card (the htmx partial, as after each
action) for one annotator: the median of 7 requests through Django's test client, ms.
Results in docs/scaling.md, "The labeling card's progress".
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--labels", type=int, default=100_000)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    old = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args.n, args.labels)
    finally:
        connection.creation.destroy_test_db(old, verbosity=0)


def run(n: int, n_labels: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    from labeling.models import Campaign, Item, Label, Upload, text_key

    rng = random.Random(0)
    users = get_user_model().objects
    boss = users.create_user("boss", is_staff=True)
    people = [users.create_user(f"a{i}") for i in range(20)]
    campaign = Campaign.objects.create(name="bench", created_by=boss, gold_rate=0.0)
    campaign.annotators.add(*people)
    upload = Upload.objects.create(
        campaign=campaign, filename="bench.csv", uploaded_by=boss, text_column="text",
        n_rows=n, n_created=n, n_blank=0, n_duplicates=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    batch: list[Item] = []
    for i in range(n):
        text = f"item {i} " + " ".join(rng.choices(["good", "bad", "film", "plot"], k=8))
        batch.append(
            Item(campaign=campaign, upload=upload, text=text, text_sha256=text_key(text),
                 position=i)
        )  # fmt: skip
        if len(batch) == 10_000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    ids = list(Item.objects.filter(campaign=campaign).values_list("pk", flat=True))
    labels = [
        Label(item_id=pk, annotator=rng.choice(people), value=rng.choice(["positive", "negative"]))
        for pk in rng.sample(ids, n_labels)
    ]
    Label.objects.bulk_create(labels, batch_size=10_000)
    # What the campaign keeps as labels arrive (labeling.consensus), set once here.
    from labeling import consensus

    consensus.recount_done(campaign)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"{connection.vendor}: {n} items, {n_labels} labels built in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip

    client = Client()
    client.force_login(people[0])
    url = f"/campaigns/{campaign.pk}/label/"
    spans = []
    for _ in range(7):
        t = time.perf_counter()
        response = client.get(url, headers={"HX-Request": "true"})
        spans.append(1000 * (time.perf_counter() - t))
        assert response.status_code == 200, response.status_code
    t = time.perf_counter()
    done = consensus.items_done(campaign)
    full = 1000 * (time.perf_counter() - t)
    print(f"card render: median {statistics.median(spans):.1f} ms (min {min(spans):.1f}, "
          f"max {max(spans):.1f}); n_done shown {response.context['n_done']}, "
          f"a full count ({done}) takes {full:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
