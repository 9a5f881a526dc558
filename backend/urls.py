from django.contrib import admin
from django.urls import include, path

from api.views import chart

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("api.urls")),
    path("chart/", chart, name="chart"),
]
