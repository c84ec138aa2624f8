"""GET/POST /v1/form/human_input/{form_token}: read and decide a Human Input form with the app key.

Answers as recorded (fixtures 08, 09, 13): 200 form / `{}`; 412 `human_input_form_submitted` or
`human_input_form_expired`; 400 `invalid_form_data` or `invalid_param` (no user); 404 for an unknown
token, another app's token, or a form not delivered to the web app.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .errors import ApiError, invalid_param
from .form_inputs import FormValues
from .forms import Form
from .pausing import EndWithoutResuming
from .service_api import authenticate, json_body, sim

# Flask-RESTx appends werkzeug's "did you mean" to a 404 raised in a handler; which routes it
# suggests depends on how close the path is to them: the recorded tokens got only the service-API
# route, "bogus-token-123" both (fixture 09).
SERVICE_ROUTE = "/v1/form/human_input/<string:form_token>"
WEB_ROUTE = "/api/form/human_input/<string:form_token>"


def form_not_found(path: str, looks_like_a_token: bool) -> ApiError:
    routes = SERVICE_ROUTE if looks_like_a_token else f"{SERVICE_ROUTE} or {WEB_ROUTE}"
    return ApiError(404, "not_found", f"Form not found. You have requested this URI [{path}] "
                                      f"but did you mean {routes} ?")


def find_form(request: Request) -> Form:
    app = authenticate(request)
    token = request.path_params["form_token"]
    form = sim(request).forms.by_token.get(token)
    if form is None or form.run.app is not app or not form.webapp:
        raise form_not_found(request.url.path, looks_like_a_token=form is not None)
    return form


async def get_form(request: Request) -> Response:
    form = find_form(request)
    form.ensure_open()
    return JSONResponse(form.answer())


async def submit_form(request: Request) -> Response:
    authenticate(request)
    body = await json_body(request)
    if not body.get("user"):
        raise invalid_param("Arg user must be provided.")  # checked before the form, like the app-token decorator
    form = find_form(request)
    form.ensure_open()
    state = sim(request)
    # Any `user` may decide (fixture 18); a local file input must have been uploaded by that user.
    values = FormValues(state.uploads, form.run.app.id, str(body["user"]))
    decision = form.decide(body.get("action"), body.get("inputs"), values)
    faults = state.faults
    if faults.resume_lost:
        return JSONResponse({})  # accepted, but nothing ever resumes the run (DIFY.md: persistence races)
    if form.waiter is None:
        return JSONResponse({})
    if faults.resume_ends_stopped:
        form.run.release(form.waiter, EndWithoutResuming("stopped", "Stopped by user.", announce=True))
    else:
        form.run.release(form.waiter, decision)  # the run resumes once all its waiting forms are decided
    return JSONResponse({})
