"""One paho-mqtt client builder for everything that talks to the broker: the MQTT output and doctor's probe.

Credentials and TLS are set up here once, and their failures translated into one-line ConfigErrors.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl

import paho.mqtt.client as mqtt

from ...errors import ConfigError
from ...security.credentials import read_secret
from .config import MqttConfig

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """A broker on this machine: what goes to it never crosses a network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_password(config: MqttConfig) -> str | None:
    if config.password_file:
        return read_secret(config.password_file, "mqtt.password_file")
    if config.password_env:
        if config.password_env not in os.environ:
            raise ConfigError(f"mqtt.password_env: environment variable {config.password_env} is not set")
        return os.environ[config.password_env]
    return None


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho 2.x client with `config`'s credentials and TLS; the caller adds its will and callbacks."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if config.username is not None:
        password = read_password(config)
        client.username_pw_set(config.username, password)
        if password and not config.tls and not is_loopback(config.host):
            log.warning("mqtt: the password goes to %s unencrypted: set mqtt.tls: true (and the broker's TLS "
                        "listener, usually port 8883)", config.host)
    if config.tls:
        for key in ("ca_file", "cert_file", "key_file"):
            value = getattr(config, key)
            if value and not os.access(value, os.R_OK):
                raise ConfigError(f"mqtt.{key}: cannot read '{value}'")
        try:
            client.tls_set(ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise ConfigError(f"mqtt: TLS settings rejected: {exc}") from exc
        client.tls_insecure_set(config.tls_insecure)
    return client
