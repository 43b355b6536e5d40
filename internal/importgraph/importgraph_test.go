// Package importgraph guards the direction of imports described in
// DESIGN.md: packages/* -> appliance -> domain packages, and domain
// packages never import each other, appliance, or a program.
package importgraph

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/univrs/hypha/"

var domains = []string{"mesh", "inference", "sensors", "ledger", "provisioning", "hwtest", "images"}

func area(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module)
	if !ok {
		return ""
	}
	return strings.SplitN(rest, "/", 2)[0]
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-e", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", module+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	isDomain := map[string]bool{}
	for _, d := range domains {
		isDomain[d] = true
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		from := area(f[0])
		for _, imp := range f[1:] {
			to := area(imp)
			if to == "" || to == from {
				continue
			}
			checked++
			switch {
			case to == "packages":
				t.Errorf("%s imports the program %s: programs are leaves", f[0], imp)
			case from == "appliance" && !isDomain[to] && to != "internal":
				t.Errorf("%s imports %s: appliance may import only domain packages", f[0], imp)
			case isDomain[from] && (to == "appliance" || isDomain[to]):
				t.Errorf("%s imports %s: domain packages talk through interfaces defined by the consumer, not imports", f[0], imp)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no in-module imports seen: the check read nothing")
	}
}
