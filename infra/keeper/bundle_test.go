package keeper

import (
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/jsii-runtime-go"
)

const (
	helloPackage  = "github.com/vbctoken/vbctoken/infra/keeper/testdata/hello"
	brokenPackage = "github.com/vbctoken/vbctoken/infra/keeper/testdata/broken"
)

func TestMain(m *testing.M) {
	// See infra/main_test.go: silence Node 20's banner, restart jsii's kernel with that
	// environment, and close it once at the end.
	os.Setenv("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
	if _, set := os.LookupEnv("CDK_VALIDATION"); !set {
		os.Setenv("CDK_VALIDATION", "false")
	}
	jsii.Close()
	code := m.Run()
	jsii.Close()
	os.Exit(code)
}

func testSource(t *testing.T) *goSource {
	t.Helper()
	goBin, err := lookGo()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return &goSource{goBin: goBin, dir: dir}
}

func TestGoBundler_BuildsAStaticStrippedArm64BinaryWithTheLambdaFlags(t *testing.T) {
	// GIVEN the bundler of a main package
	src := testSource(t)
	b := &goBundler{goBin: src.goBin, dir: src.dir, pkg: helloPackage}
	out := t.TempDir()

	// WHEN it builds
	if err := b.build(t.Context(), out); err != nil {
		t.Fatal(err)
	}

	// THEN out/bootstrap is a static, stripped linux/arm64 executable
	bin := filepath.Join(out, "bootstrap")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 || f.Type != elf.ET_EXEC {
		t.Errorf("machine %v type %v, want EM_AARCH64 ET_EXEC", f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("dynamically linked (PT_INTERP), want static (CGO_ENABLED=0)")
		}
	}
	if f.Section(".symtab") != nil {
		t.Error("symbol table present, want stripped (-s -w)")
	}
	if f.Section(".note.go.buildid") != nil {
		t.Error("build id present, want none (-buildid=): the same source must give the same bytes")
	}
	// AND its build settings are internal/lambdabuild's (with -trimpath, Go does not
	// record -ldflags: the sections above show them)
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	for key, want := range map[string]string{
		"-tags": "lambda.norpc", "-trimpath": "true",
		"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": "arm64",
	} {
		if settings[key] != want {
			t.Errorf("build setting %s = %q, want %q", key, settings[key], want)
		}
	}
}

// synthFunction synthesizes one function whose code is functionCode(pkg) and returns the
// assembly directory, or the panic message synth raised.
func synthFunction(t *testing.T, pkg string) (outdir, panicked string) {
	t.Helper()
	outdir = t.TempDir()
	func() {
		defer func() {
			if r := recover(); r != nil {
				panicked = fmt.Sprint(r)
			}
		}()
		app := awscdk.NewApp(&awscdk.AppProps{Outdir: jsii.String(outdir)})
		stack := awscdk.NewStack(app, jsii.String("Bundled"), nil)
		awslambda.NewFunction(stack, jsii.String("Fn"), &awslambda.FunctionProps{
			Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
			Architecture: awslambda.Architecture_ARM_64(),
			Handler:      jsii.String("bootstrap"),
			Code:         functionCode("", pkg, testSource(t)),
		})
		app.Synth(nil)
	}()
	return outdir, panicked
}

func TestFunctionCode_BuildsFromSourceDuringSynth(t *testing.T) {
	// WHEN a stack whose function has no prebuilt code is synthesized
	outdir, panicked := synthFunction(t, helloPackage)
	if panicked != "" {
		t.Fatal(panicked)
	}

	// THEN CDK's local bundling ran the Go build: the asset holds an arm64 bootstrap
	assets, _ := filepath.Glob(filepath.Join(outdir, "asset.*", "bootstrap"))
	if len(assets) != 1 {
		t.Fatalf("assets with a bootstrap: %v, want one", assets)
	}
	f, err := elf.Open(assets[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != elf.EM_AARCH64 {
		t.Errorf("asset binary machine %v, want EM_AARCH64", f.Machine)
	}
	if fi, _ := os.Stat(assets[0]); fi.Mode()&0o100 == 0 {
		t.Errorf("asset binary mode %v, want executable", fi.Mode())
	}

	// AND the asset is hashed on the build output, so a second synth of the same
	// source names the same asset (a deployment updates nothing)
	again, panicked := synthFunction(t, helloPackage)
	if panicked != "" {
		t.Fatal(panicked)
	}
	second, _ := filepath.Glob(filepath.Join(again, "asset.*", "bootstrap"))
	if len(second) != 1 || filepath.Base(filepath.Dir(second[0])) != filepath.Base(filepath.Dir(assets[0])) {
		t.Errorf("second synth assets %v, first %v: want the same hash", second, assets)
	}
}

func TestFunctionCode_ABuildFailureFailsSynthWithGosMessage(t *testing.T) {
	// WHEN the function's package does not compile
	_, panicked := synthFunction(t, brokenPackage)

	// THEN synth fails, naming the package and carrying the compiler's message
	for _, want := range []string{"go build " + brokenPackage, "undefinedFunction"} {
		if !strings.Contains(panicked, want) {
			t.Errorf("synth failure %q lacks %q", panicked, want)
		}
	}
}

func TestLookGo_AbsentSaysHowToInstallOrUsePrebuiltBinaries(t *testing.T) {
	// GIVEN no go in PATH nor GOROOT
	t.Setenv("PATH", t.TempDir())
	t.Setenv("GOROOT", "")

	// WHEN the bundler looks for it
	_, err := lookGo()

	// THEN the error says what to install and how to do without
	if err == nil {
		t.Fatal("lookGo found a go command in an empty PATH")
	}
	for _, want := range []string{"Go toolchain", "https://go.dev/dl/", "make build", "refresherCodeDir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
