//! The OpenAPI document a service serves is its contract: a client generated from it, or a tool
//! such as Schemathesis pointed at it, must find every answer the service can give described.
//!
//! The answers every route shares are added here, once, rather than repeated (and forgotten) in
//! each service's annotations: problem documents are `application/problem+json`; every route can
//! answer 503 when a dependency is away; a route with a body can answer 400 (not JSON), 413 (too
//! large), 415 (not `application/json`) and 422 (breaks a rule). Each operation is tagged with
//! its resource (the path's first segment). The document is served at `/openapi.json` and browsed
//! at `/docs` (Swagger UI, bundled into the binary: nothing is fetched at build or run time).

use axum::Router;
use serde_json::{Value, json};
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";
const PROBLEM_SCHEMA: &str = "#/components/schemas/Problem";

fn problem_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA}}}
    })
}

/// Answers with a problem document are described as `application/problem+json`, as sent.
fn problem_media_type(response: &mut Value) {
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    let is_problem = content
        .get("application/json")
        .and_then(|media| media.pointer("/schema/$ref"))
        .and_then(Value::as_str)
        == Some(PROBLEM_SCHEMA);
    if is_problem && let Some(media) = content.remove("application/json") {
        content.insert(PROBLEM_MEDIA_TYPE.to_owned(), media);
    }
}

/// The document with every shared answer described; see the module documentation.
pub fn complete(document: &OpenApi) -> Result<Value, serde_json::Error> {
    let mut json = serde_json::to_value(document)?;
    if let Some(paths) = json.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let resource = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default()
                .to_owned();
            let Some(operations) = item.as_object_mut() else {
                continue;
            };
            for (method, operation) in operations.iter_mut() {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
                ) {
                    continue;
                }
                let has_body = operation.get("requestBody").is_some();
                let Some(object) = operation.as_object_mut() else {
                    continue;
                };
                object.insert("tags".to_owned(), json!([resource]));
                let responses = object
                    .entry("responses")
                    .or_insert_with(|| json!({}))
                    .as_object_mut();
                let Some(responses) = responses else {
                    continue;
                };
                for response in responses.values_mut() {
                    problem_media_type(response);
                }
                let mut shared = vec![(
                    "503",
                    "A dependency (database, broker or schema registry) is unavailable; retry later",
                )];
                if has_body {
                    shared.extend([
                        ("400", "The body is not valid JSON"),
                        ("413", "The body is larger than 64 KiB"),
                        ("415", "The body is not application/json"),
                        ("422", "The body breaks a rule; `errors` names each field"),
                    ]);
                }
                for (status, description) in shared {
                    responses
                        .entry(status)
                        .or_insert_with(|| problem_response(description));
                }
            }
        }
    }
    Ok(json)
}

/// Serves the completed document at `/openapi.json` and Swagger UI at `/docs`. The document is
/// served as the JSON it was completed as, not read back into utoipa's types: deserializing an
/// `OpenApi` was a quarter of this crate's compiled code (164,000 of 622,000 lines of IR).
pub fn openapi_route(document: OpenApi) -> Router {
    let ui = SwaggerUi::new("/docs");
    let ui = match complete(&document) {
        Ok(completed) => ui.external_url_unchecked("/openapi.json", completed),
        Err(error) => {
            tracing::warn!(%error, "the OpenAPI document could not be completed; serving it as annotated");
            ui.url("/openapi.json", document)
        }
    };
    Router::from(ui)
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    use super::*;
    use crate::Problem;

    #[derive(utoipa::OpenApi)]
    #[openapi(paths(create), components(schemas(Problem)))]
    struct Doc;

    #[derive(serde::Deserialize, utoipa::ToSchema)]
    #[allow(dead_code)]
    struct Thing {
        name: String,
    }

    #[utoipa::path(
        post,
        path = "/things/{id}",
        request_body = Thing,
        responses((status = 201, description = "made"), (status = 404, body = Problem))
    )]
    #[allow(dead_code)]
    fn create() {}

    #[test]
    fn problems_are_problem_json_and_shared_answers_are_described() -> Result<(), serde_json::Error>
    {
        let json = complete(&Doc::openapi())?;
        let operation = &json["paths"]["/things/{id}"]["post"];
        assert_eq!(operation["tags"], json!(["things"]));
        let responses = &operation["responses"];
        assert!(
            responses["404"]["content"][PROBLEM_MEDIA_TYPE].is_object(),
            "{responses}"
        );
        assert!(responses["404"]["content"]["application/json"].is_null());
        for status in ["400", "413", "415", "422", "503"] {
            assert_eq!(
                responses[status]["content"][PROBLEM_MEDIA_TYPE]["schema"]["$ref"], PROBLEM_SCHEMA,
                "{status}: {responses}"
            );
        }
        assert_eq!(responses["201"]["description"], "made");
        Ok(())
    }
}
