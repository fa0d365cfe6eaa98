module istio.io/api

go 1.19
