// Package argohealth runs an Argo CD health script (Lua) on an object the
// way Argo CD does: with github.com/yuin/gopher-lua, only the base, table,
// string and math libraries, the object as the global `obj` (maps as tables,
// lists as 1-based tables, numbers as Lua numbers) and the script's returned
// table read as {status, message}. Tests use it on live objects.
package argohealth

import (
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

// Health is what a health script returns.
type Health struct {
	Status, Message string
}

// Statuses Argo CD accepts from a health script.
var statuses = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}

// Evaluate runs script on obj (an unstructured object's content).
func Evaluate(script string, obj map[string]any) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString}, {lua.MathLibName, lua.OpenMath}} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return Health{}, fmt.Errorf("running the health script: %w", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("the health script returned %s, not a table", L.Get(-1).Type())
	}
	h := Health{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}
	if !statuses[h.Status] {
		return h, fmt.Errorf("the health script returned status %q, which Argo CD does not know", h.Status)
	}
	return h, nil
}

// toLua converts decoded JSON to Lua values.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	}
	return lua.LString(fmt.Sprint(v))
}
