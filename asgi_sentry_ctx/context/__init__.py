"""What a request knows, and how it reaches an event.

The request's state and its context variable; request IDs and the policy
that gives a request its ID; the user, business fields and breadcrumbs; the
request data an event shows; the per-request enrichment of events and the
global processors; one event per exception; the request's own Sentry scopes;
carrying context to threads; the app's failure reports. Nothing here knows
how Sentry is set up or where events are delivered.
"""
