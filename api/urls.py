from django.urls import path

from api import views

app_name = "api"

urlpatterns = [
    path("second-candles/", views.second_candles, name="second-candles"),
    path("minute-candles/", views.minute_candles, name="minute-candles"),
    path("tick-candles/", views.tick_candles, name="tick-candles"),
    path("quote-candles/", views.quote_candles, name="quote-candles"),
    path("realtime-sentiment/", views.realtime_sentiment, name="realtime-sentiment"),
    path("symbols/", views.symbols, name="symbols"),
    path("coverage/", views.coverage, name="coverage"),
    path("stream/", views.stream, name="stream"),
    path("schema/", views.api_schema, name="schema"),
    path("docs/", views.api_docs, name="docs"),
    path("health/", views.health, name="health"),
]
