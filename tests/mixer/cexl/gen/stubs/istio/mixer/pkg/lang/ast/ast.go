// Package ast is a stand-in for the one type of Mixer's lang/ast package that the
// expression test table refers to (extra function declarations for a case).
package ast

import descriptor "istio.io/api/policy/v1beta1"

// FunctionMetadata declares an extra function a test case compiles against.
type FunctionMetadata struct {
	Name          string
	Instance      bool
	TargetType    descriptor.ValueType
	ArgumentTypes []descriptor.ValueType
	ReturnType    descriptor.ValueType
}
