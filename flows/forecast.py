"""The forecasting family's Prefect flow."""

from trainyard.flows.family import family_flow
from trainyard.tasks.forecast.family import FORECAST

forecast_flow = family_flow(FORECAST)
