package envoy.authz

import rego.v1

import input.attributes.request.http

default allow := false

# Readers list and read people; admins also add them. Who is what comes from the
# bundle's data (people/data.json → data.people).
allow if {
	http.method == "GET"
	input.parsed_path[0] == "people"
	role in {"reader", "admin"}
}

allow if {
	http.method == "POST"
	input.parsed_path == ["people"]
	role == "admin"
	input.parsed_body.firstname != ""
}

role := data.people.roles[http.headers["x-user"]]

# OPA-Envoy's decision object: headers for the upstream, a status and body for refusals.
result["allowed"] := allow

result["headers"] := {"x-user-role": role} if role

result["request_headers_to_remove"] := ["x-debug"]

result["http_status"] := 401 if {
	not allow
	not http.headers["x-user"]
}

result["body"] := "who are you?" if {
	not allow
	not http.headers["x-user"]
}
