module cexlgen

go 1.19

require (
	istio.io/api v0.0.0
	istio.io/istio v0.0.0
	istio.io/pkg v0.0.0
)

replace (
	istio.io/api => ./stubs/api
	istio.io/istio => ./stubs/istio
	istio.io/pkg => ./stubs/pkg
)
