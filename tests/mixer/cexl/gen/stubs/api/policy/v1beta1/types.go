// Package v1beta1 is a stand-in for the few names of istio.io/api/policy/v1beta1
// that Mixer's expression test table refers to. It holds no behaviour.
package v1beta1

// ValueType names an attribute type; the string is what the JSON dump records.
type ValueType string

// The attribute types named by the table.
const (
	VALUE_TYPE_UNSPECIFIED ValueType = ""
	STRING                 ValueType = "STRING"
	INT64                  ValueType = "INT64"
	DOUBLE                 ValueType = "DOUBLE"
	BOOL                   ValueType = "BOOL"
	TIMESTAMP              ValueType = "TIMESTAMP"
	IP_ADDRESS             ValueType = "IP_ADDRESS"
	EMAIL_ADDRESS          ValueType = "EMAIL_ADDRESS"
	URI                    ValueType = "URI"
	DNS_NAME               ValueType = "DNS_NAME"
	DURATION               ValueType = "DURATION"
	STRING_MAP             ValueType = "STRING_MAP"
)

// AttributeManifest_AttributeInfo declares one attribute's type.
type AttributeManifest_AttributeInfo struct {
	ValueType ValueType
}
