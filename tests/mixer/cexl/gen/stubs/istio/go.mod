module istio.io/istio

go 1.19

require istio.io/api v0.0.0

replace istio.io/api => ../api
