"""manage.py simulate_annotators --taste SLUG --oracle NAME --annotators N [--noise P] [--until-idle]"""

import io
import random
import threading
import time
import uuid

import httpx
from django.core.management.base import BaseCommand, CommandError
from PIL import Image
from rest_framework.authtoken.models import Token

from annotate import services
from annotate.models import Taste


class Command(BaseCommand):
    help = "Simulated annotators judging through the real HTTP API with tokens, by a toy-world oracle."

    def add_arguments(self, parser):
        from sampler.toy.oracles import ORACLES

        parser.add_argument("--taste", required=True)
        parser.add_argument("--oracle", required=True, choices=ORACLES)
        parser.add_argument("--annotators", type=int, default=2)
        parser.add_argument("--noise", type=float, default=0.0, help="share of answers left to a coin")
        parser.add_argument("--until-idle", action="store_true", help="stop once no pair has come for --idle seconds")
        parser.add_argument("--idle", type=float, default=10.0)
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running Chisel server")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args, taste, oracle, annotators, noise, until_idle, idle, url, seed, **options):
        taste_row = Taste.objects.filter(slug=taste).first()
        if taste_row is None:
            raise CommandError(f"There is no taste '{taste}'.")
        if not 0 <= noise <= 1:
            raise CommandError("--noise is a share between 0 and 1.")
        tokens = [self.annotator_token(taste_row, f"sim-{oracle}-{index}") for index in range(annotators)]
        counts = [0] * annotators
        stop = threading.Event()
        threads = [
            threading.Thread(target=self.annotate, args=(url, taste, token, oracle, noise, random.Random(seed + i),
                                                          until_idle, idle, stop, counts, i), daemon=True)
            for i, token in enumerate(tokens)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        except KeyboardInterrupt:
            stop.set()
        self.stdout.write(f"{sum(counts)} judgements by {annotators} simulated '{oracle}' annotators (noise {noise}).")

    def annotator_token(self, taste: Taste, username: str) -> str:
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            return services.annotator_create(username=username, tastes=[taste])[1]
        services.annotator_join(annotator=user, taste=taste)
        return Token.objects.get_or_create(user=user)[0].key

    def annotate(self, url, taste, token, oracle, noise, rng, until_idle, idle, stop, counts, index) -> None:
        from sampler.toy.oracles import judge

        client = httpx.Client(base_url=url, headers={"Authorization": f"Token {token}"}, timeout=30)
        quiet_since = time.monotonic()
        while not stop.is_set():
            response = client.get("/api/v1/assignments/next/", params={"taste": taste, "prefetch": 1})
            if response.status_code == 204:
                if until_idle and time.monotonic() - quiet_since > idle:
                    return
                time.sleep(1)
                continue
            response.raise_for_status()
            quiet_since = time.monotonic()
            for item in response.json():
                left, right = (Image.open(io.BytesIO(client.get(item[side]["url"]).content)) for side in ("left", "right"))
                choice = judge(oracle, left, right, noise=noise, rng=rng)
                client.post("/api/v1/judgements/", json={
                    "assignment": item["id"], "choice": choice, "client_uuid": str(uuid.uuid4()), "duration_ms": 0,
                }).raise_for_status()
                counts[index] += 1
