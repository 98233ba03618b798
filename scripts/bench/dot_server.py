"""django-oauth-toolkit as the peer of the revocation benchmark: a minimal
Django project (SQLite, as shipped) with DOT's endpoints, seeded with live
access tokens of one confidential client.

    dot_server.py DATA_DIR seed N     # migrate, create the client, N tokens
                                      # -> DATA_DIR/tokens.txt, DATA_DIR/client.txt
    DOT_DATA=DATA_DIR gunicorn dot_server:application

The bench serves it with gunicorn (one worker per core, threads for keep-alive)
and revokes each seeded token once at /o/revoke_token/ with the client's
credentials in the form (RFC 7009 §2.1).
"""

import os
import secrets
import sys
from datetime import timedelta

DATA = os.path.abspath(os.environ.get("DOT_DATA") or sys.argv[1])

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-" + "x" * 40,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "oauth2_provider",
    ],
    MIDDLEWARE=[],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(DATA, "db.sqlite3")}},
    USE_TZ=True,
    OAUTH2_PROVIDER={"ACCESS_TOKEN_EXPIRE_SECONDS": 6 * 3600},
)
django.setup()

from django.urls import include, path  # noqa: E402

urlpatterns = [path("o/", include("oauth2_provider.urls", namespace="oauth2_provider"))]


def seed(n):
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.utils import timezone
    from oauth2_provider.models import AccessToken, Application

    call_command("migrate", verbosity=0)
    user = User.objects.create(username="bench")
    secret = secrets.token_urlsafe(32)
    app = Application.objects.create(
        name="bench",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_CLIENT_CREDENTIALS,
        client_secret=secret,
        # A random 256-bit secret needs no slow hash (Lockstep compares
        # SHA-256 too); with DOT's default PBKDF2 every request would cost
        # ~0.4 s of hashing and the benchmark would measure the hasher.
        hash_client_secret=False,
        user=user,
    )
    expires = timezone.now() + timedelta(hours=6)
    tokens = [secrets.token_urlsafe(32) for _ in range(n)]
    AccessToken.objects.bulk_create(
        [AccessToken(user=user, application=app, token=t, expires=expires, scope="read") for t in tokens],
        batch_size=5000,
    )
    with open(os.path.join(DATA, "tokens.txt"), "w") as f:
        f.write("\n".join(tokens))
    with open(os.path.join(DATA, "client.txt"), "w") as f:
        f.write(f"{app.client_id}\n{secret}\n")


if __name__ == "__main__":
    seed(int(sys.argv[3]))
else:
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
