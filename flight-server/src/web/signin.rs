//! Signing in and out: the form handlers.

use super::*;

pub(super) async fn form(State(app): State<App>, headers: HeaderMap) -> Response {
    if session(&app, &headers).is_some() {
        return see_other("/dashboard");
    }
    auth::sign_in_page(app.secure, None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn sign_in(
    State(app): State<App>,
    ConnectInfo(peer::Peer(from)): ConnectInfo<peer::Peer>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let nonce = auth::cookie(&headers, NONCE, app.secure);
    if auth::cross_site(&headers) || !nonce.is_some_and(|n| form_token_matches(&n, &form.csrf)) {
        let message = "the sign-in form had expired; please sign in again";
        return auth::sign_in_page(app.secure, Some(message), StatusCode::BAD_REQUEST);
    }
    let service = &app.service;
    match service
        .access
        .sign_in_with_password(&form.username, form.password, Some(from))
        .await
    {
        Ok((caller, token)) => {
            if let Err(status) = service.audit_sign_in(&caller, "SignIn (web)").await {
                return error_page(StatusCode::SERVICE_UNAVAILABLE, status.message());
            }
            let mut response = see_other("/dashboard");
            let headers = response.headers_mut();
            headers.append(SET_COOKIE, set_cookie(SESSION, &token, app.secure, 3600));
            headers.append(SET_COOKIE, set_cookie(NONCE, "", app.secure, 0));
            response
        }
        Err(who) => {
            let status = service.refuse_unrecognised("SignIn (web)", &who, Some(from)).await;
            auth::sign_in_page(app.secure, Some(status.message()), StatusCode::UNAUTHORIZED)
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn sign_out(State(app): State<App>, headers: HeaderMap, Form(form): Form<SignOutForm>) -> Response {
    let session = match posted(&app, &headers, &form.csrf) {
        Ok(session) => session,
        Err(not_taken) => return not_taken.into_response(),
    };
    app.service.access.end_session(&session.token);
    let mut response = see_other("/signin");
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION, "", app.secure, 0));
    response
}
