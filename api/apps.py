from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Market data"

    def ready(self) -> None:
        from api import checks  # noqa: F401  (registers the system checks)
