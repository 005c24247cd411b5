"""Value sets the chart is rendered with: each mode, its defaults and the options around them."""

from __future__ import annotations

from typing import Any

HMAC = "chart-test-hmac-secret-0123456789abcdef"
PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n"
    "-----END PUBLIC KEY-----\n"
)

STANDALONE: dict[str, dict[str, Any]] = {
    "standalone-defaults": {},
    "standalone-everything": {
        "server": {"port": 9000, "httpPort": 9001, "drainDelay": 2.5, "shutdownTimeout": 20},
        "config": {
            "log_level": "debug",
            "auth_issuer": "idp.example",
            "auth_audience": "chat",
            "room_create_roles": ["admin"],
            "max_body_bytes": 8192,
            "store_durability": "data",
            "store_map_size": 68719476736,
            "retention_max_age": 86400.5,
            "mcp_enabled": False,
        },
        "auth": {"hmacSecret": HMAC},
        "metricsToken": {"value": "scrape-me"},
        "providers": {
            "openai": {"type": "openai", "model": "gpt-4o-mini", "apiKey": "sk-test"},
            "claude": {
                "type": "anthropic",
                "model": "claude-sonnet-4-5",
                "existingSecret": "ai-keys",
                "existingSecretKey": "anthropic",
                "fallback": "openai",
                "settings": {"retries": 3, "total_timeout": 120, "headers": {"X-Org": "o"}},
            },
            "local": {"type": "offline"},  # keyless
        },
        "persistence": {"storageClass": "fast-ssd", "size": "50Gi"},
        "ingress": {
            "enabled": True,
            "host": "chat.example.com",
            "tls": [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
        "terminationGracePeriodSeconds": 60,
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "nodeSelector": {"disktype": "ssd"},
        "podAnnotations": {"team": "chat"},
        "image": {"digest": "sha256:" + "a" * 64},
    },
    "standalone-ephemeral": {
        "persistence": {"enabled": False},
        "podDisruptionBudget": {"enabled": False},
        "serviceAccount": {"create": False},
        "server": {"drainDelay": 0},
    },
    "standalone-public-key": {
        "auth": {"type": "publicKey", "publicKey": PEM},
        "config": {"auth_algorithms": ["EdDSA"]},
    },
    "standalone-existing-jwks": {
        "auth": {"type": "jwks", "existingSecret": "jwt-keys"},
        "config": {"auth_algorithms": ["RS256", "ES256"]},
        "metricsToken": {"existingSecret": "scrape-token"},
    },
}

CLUSTER: dict[str, dict[str, Any]] = {
    "cluster-defaults": {"mode": "cluster"},
    "cluster-autoscaled": {
        "mode": "cluster",
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        "cluster": {"nats": {"url": "tls://nats.example:4222", "credentialsSecret": "nats-creds"}},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "metricsToken": {"existingSecret": "scrape-token"},
        "ingress": {"enabled": True},
        "auth": {"existingSecret": "jwt-keys"},
    },
}

ALL = {**STANDALONE, **CLUSTER}

# Values the schema (or the chart) must refuse, with a part of the message helm prints.
# The chart's own checks (a template `fail`, for rules that relate two values) stop
# `helm template` and `helm install`; `helm lint` only reports them as INFO.
TEMPLATE_CHECKS = {"grace shorter than the drain"}
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "typo at the top": ({"replicas": 3}, "Additional property replicas is not allowed"),
    "typo'd setting": ({"config": {"log_levle": "debug"}}, "Additional property log_levle"),
    "bad choice": ({"config": {"log_level": "loud"}}, "config.log_level must be one of"),
    "wrong type": ({"config": {"max_body_bytes": "big"}}, "Invalid type. Expected: integer"),
    "chart-owned setting": ({"config": {"port": 1}}, "Additional property port is not allowed"),
    "unknown mode": ({"mode": "ha"}, "mode must be one of the following"),
    "port out of range": ({"server": {"port": 70000}}, "Must be less than or equal to 65535"),
    "short HMAC secret": ({"auth": {"hmacSecret": "short"}}, "auth.hmacSecret"),
    "public key without algorithms": (
        {"auth": {"type": "publicKey", "publicKey": PEM}},
        "auth_algorithms is required",
    ),
    "root user": ({"securityContext": {"runAsNonRoot": False}}, "runAsNonRoot"),
    "writable root filesystem": (
        {"securityContext": {"readOnlyRootFilesystem": False}},
        "readOnlyRootFilesystem",
    ),
    "grace shorter than the drain": (
        {"terminationGracePeriodSeconds": 5},
        "terminationGracePeriodSeconds (5) must be at least",
    ),
    "unknown provider type": ({"providers": {"x": {"type": "gemini"}}}, "providers.x.type"),
    "bad duration": (
        {"metrics": {"serviceMonitor": {"enabled": True, "interval": "30 seconds"}}},
        "interval",
    ),
}
