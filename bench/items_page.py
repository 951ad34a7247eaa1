"""Time the items page (docs/platform.md, "The items page") on a campaign of N items.

    .venv/bin/python -m bench.items_page --n 100000                          # SQLite
    scripts/with-postgres.sh .venv/bin/python -m bench.items_page --n 100000 # PostgreSQL

Builds a throwaway test database (migrations included, so PostgreSQL gets the trigram index
of migration 0018), one campaign of N items (bulk_create; a tenth with gold, confidences,
two metadata values) with labels on a fifth of them by 20 annotators, then requests the page
through Django's test client: the median of 3 requests per filter, the htmx partial (what a
filter change fetches) and the full page. Results in docs/scaling.md, "The items page".
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=20_000)
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
    from django.utils import timezone

    from labeling.models import Campaign, Item, Label, Upload, text_key

    rng = random.Random(0)
    users = get_user_model().objects
    boss = users.create_user("boss", is_staff=True)
    people = [users.create_user(f"a{i}") for i in range(20)]
    campaign = Campaign.objects.create(name="bench", created_by=boss)
    campaign.annotators.add(*people)
    upload = Upload.objects.create(
        campaign=campaign, filename="bench.csv", uploaded_by=boss, text_column="text",
        n_rows=n, n_created=n, n_blank=0, n_duplicates=0,
    )  # fmt: skip
    words = ["good", "bad", "film", "plot", "actor", "scene", "music", "slow", "great"]
    t0 = time.perf_counter()
    batch: list[Item] = []
    for i in range(n):
        text = " ".join(rng.choices(words, k=10)) + f" #{i}"
        batch.append(
            Item(
                campaign=campaign, upload=upload, text=text, text_sha256=text_key(text),
                gold=rng.choice(["positive", "negative"]) if i % 10 == 0 else "",
                metadata={"genre": rng.choice(["drama", "comedy", "horror"])}, position=i,
                evaluation=i % 1000 == 1, confidence=rng.random(), predicted=rng.randrange(2),
                review_requested_at=timezone.now() if i % 1000 == 2 else None,
            )
        )  # fmt: skip
        if len(batch) == 5000:
            Item.objects.bulk_create(batch)
            batch = []
    Item.objects.bulk_create(batch)
    ids = list(Item.objects.filter(campaign=campaign).values_list("pk", flat=True))
    labels = [
        Label(item_id=pk, annotator=rng.choice(people), value=rng.choice(["positive", "negative"]))
        for pk in rng.sample(ids, n_labels)
    ]
    Label.objects.bulk_create(labels, batch_size=5000)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"{connection.vendor}: {n} items, {n_labels} labels built in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip

    client = Client()
    client.force_login(boss)
    url = f"/campaigns/{campaign.pk}/items/"
    queries = {
        "first page": {},
        "deep page (after=n-100)": {"after": n - 100},
        "text search": {"q": "actor music great"},
        "text search, rare": {"q": f"#{n // 2}"},
        "state=labeled": {"state": "labeled"},
        "state=unlabeled": {"state": "unlabeled"},
        "label=positive (final)": {"label": "positive"},
        "label=positive (any)": {"label": "positive", "label_of": "any"},
        "annotator": {"annotator": people[3].pk},
        "gold=yes": {"gold": "yes"},
        "evaluation=yes": {"evaluation": "yes"},
        "review=in": {"review": "in"},
        "meta genre=horror": {"meta": "genre=horror"},
        "confidence 0.9-1": {"conf_min": 0.9},
        "confidence 0.5-0.5001": {"conf_min": 0.5, "conf_max": 0.5001},
    }
    print(f"{'filter':32} {'partial ms':>10} {'page ms':>8}  count")
    for name, query in queries.items():
        times = {}
        for kind, headers in (("partial", {"HX-Request": "true"}), ("page", {})):
            spans = []
            for _ in range(3):
                t = time.perf_counter()
                response = client.get(url, query, headers=headers)
                spans.append(1000 * (time.perf_counter() - t))
                assert response.status_code == 200, (name, response.status_code)
            times[kind] = statistics.median(spans)
        page = response.context["page"]
        count = f"{page.count}{'+' if page.capped else ''}"
        print(f"{name:32} {times['partial']:10.1f} {times['page']:8.1f}  {count}")


if __name__ == "__main__":
    main()
