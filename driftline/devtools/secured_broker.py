"""A SASL_SSL listener for the local broker: TLS certificates made with the JDK's keytool and SASL/PLAIN users
in Kafka's own JAAS configuration, so driftline's security settings can be proven without a real cluster.

:meth:`SecuredListener.create` writes, into a directory of its own, a throwaway certificate authority
(``ca.pem``, the file clients trust), the broker's PKCS12 keystore (a key and a certificate for
``127.0.0.1`` and ``localhost`` signed by that CA) and a PKCS12 truststore holding the CA, which the broker
uses when it connects to its own listener. ``LocalKafka(settings, secured=listener)`` then serves SASL_SSL on
its port instead of PLAINTEXT. Development and tests only: the CA's key sits beside the certificates.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driftline.schemas.errors import ConfigError

LISTENER = "SASL_SSL"
BROKER_USER = "broker"  # the broker's own login on its listener (inter-broker traffic)
VALIDITY_DAYS = 30
HOST_NAMES = "SAN=ip:127.0.0.1,dns:localhost"
# the JAAS value is a quoted string in a properties file: keep users and passwords to safe characters
_SAFE = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


@dataclass(frozen=True)
class SecuredListener:
    """The TLS material and SASL/PLAIN users of a local SASL_SSL listener (see the module's docstring)."""

    directory: Path
    users: Mapping[str, str] = field(repr=False)  # user -> password, the broker's own included
    store_password: str = field(repr=False)

    @classmethod
    def create(cls, directory: Path, users: Mapping[str, str], keytool: str = "keytool") -> SecuredListener:
        """Make a CA, the broker's keystore and a truststore in ``directory``; ``users`` may log in.

        Raises :class:`ConfigError` when keytool is missing or a name or password has characters the JAAS
        configuration cannot hold.
        """
        for user, password in users.items():
            if not (_SAFE.match(user) and _SAFE.match(password)):
                raise ConfigError(
                    f"SASL user {user!r}: users and passwords of the local broker may hold only letters, digits "
                    "and ._~+/=- (they are written into its JAAS configuration)"
                )
        tool = shutil.which(keytool)
        if tool is None:
            raise ConfigError(
                f"keytool not found ({keytool!r} is not an executable on PATH): it comes with the JDK; "
                "install openjdk-17-jdk-headless"
            )
        directory.mkdir(parents=True, exist_ok=True)
        listener = cls(directory, {BROKER_USER: secrets.token_urlsafe(18), **users}, secrets.token_urlsafe(18))
        listener._make_stores(tool)
        return listener

    @property
    def ca_pem(self) -> Path:
        """The CA certificate (PEM) that clients trust: ``ssl_ca_location``."""
        return self.directory / "ca.pem"

    @property
    def keystore(self) -> Path:
        """The broker's key and certificate (PKCS12)."""
        return self.directory / "broker.p12"

    @property
    def truststore(self) -> Path:
        """The CA, for the broker's own connections to its listener (PKCS12)."""
        return self.directory / "truststore.p12"

    def broker_properties(self) -> dict[str, str]:
        """The broker's server.properties entries for TLS, SASL/PLAIN and its users."""
        accounts = " ".join(f'user_{user}="{password}"' for user, password in self.users.items())
        jaas = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{BROKER_USER}" password="{self.users[BROKER_USER]}" {accounts};'
        )
        return {
            "sasl.enabled.mechanisms": "PLAIN",
            "sasl.mechanism.inter.broker.protocol": "PLAIN",
            f"listener.name.{LISTENER.lower()}.plain.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.keystore),
            "ssl.keystore.password": self.store_password,
            "ssl.key.password": self.store_password,
            "ssl.truststore.type": "PKCS12",
            "ssl.truststore.location": str(self.truststore),
            "ssl.truststore.password": self.store_password,
        }

    def kafka_settings(self, user: str, password: str | None = None) -> dict[str, Any]:
        """``[kafka]`` settings for a client logging in as ``user`` (with ``password``, e.g. a wrong one,
        instead of the user's own)."""
        return {
            "security_protocol": LISTENER,
            "sasl_mechanism": "PLAIN",
            "sasl_username": user,
            "sasl_password": self.users[user] if password is None else password,
            "ssl_ca_location": self.ca_pem,
        }

    def _make_stores(self, keytool: str) -> None:
        ca_store = self.directory / "ca.p12"
        request, signed = self.directory / "broker.csr", self.directory / "broker.pem"
        store = ["-storetype", "PKCS12", "-storepass:env", "DRIFTLINE_STORE_PASSWORD"]
        key = ["-keyalg", "RSA", "-keysize", "2048", "-validity", str(VALIDITY_DAYS)]
        steps = [
            ["-genkeypair", "-alias", "ca", "-dname", "CN=driftline local CA", "-ext", "bc:c", *key],
            ["-exportcert", "-rfc", "-alias", "ca", "-file", str(self.ca_pem)],
        ]
        broker_steps = [
            ["-genkeypair", "-alias", "broker", "-dname", "CN=localhost", "-ext", HOST_NAMES, *key],
            ["-certreq", "-alias", "broker", "-file", str(request)],
        ]
        sign = ["-gencert", "-alias", "ca", "-infile", str(request), "-outfile", str(signed), "-rfc"]
        sign += ["-ext", HOST_NAMES, "-validity", str(VALIDITY_DAYS)]
        environment = {**os.environ, "DRIFTLINE_STORE_PASSWORD": self.store_password}

        def run(arguments: list[str], keystore: Path) -> None:
            command = [keytool, "-noprompt", *arguments, "-keystore", str(keystore), *store]
            result = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ConfigError(f"keytool {arguments[0]} failed in {self.directory}: {result.stdout}{result.stderr}")

        for step in steps:
            run(step, ca_store)
        for step in broker_steps:
            run(step, self.keystore)
        run(sign, ca_store)
        run(["-importcert", "-alias", "ca", "-file", str(self.ca_pem)], self.keystore)
        run(["-importcert", "-alias", "broker", "-file", str(signed)], self.keystore)
        run(["-importcert", "-alias", "ca", "-file", str(self.ca_pem)], self.truststore)
