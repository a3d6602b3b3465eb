"""The app's settings plus the bare callback endpoint the ingest benchmark compares against."""

from imagereview.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.ingest_urls"
