package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3assets"
	"github.com/aws/jsii-runtime-go"

	"github.com/vbctoken/vbctoken/internal/lambdabuild"
)

// Import paths of the two functions. The bundler builds them by import path, so a CDK app
// in another module that requires github.com/vbctoken/vbctoken builds them the same way.
const (
	CallbackPackage  = "github.com/vbctoken/vbctoken/functions/callback"
	RefresherPackage = "github.com/vbctoken/vbctoken/functions/refresher"
)

// goMissingHint is the message when the Go toolchain is needed and absent.
const goMissingHint = "building the Lambda functions during synth needs the Go toolchain, and no `go` command was found in PATH: " +
	"install Go (https://go.dev/dl/), or build elsewhere (`make build`) and pass the directories holding the bootstrap binaries " +
	"(CallbackCodeDir/RefresherCodeDir, or `-c callbackCodeDir=../dist/callback -c refresherCodeDir=../dist/refresher`)"

// goBundler compiles one function with the local Go toolchain during synth: CDK core's
// local bundling (ILocalBundling). The aws-lambda-go-alpha construct does the same for
// TypeScript apps, but it is not published for Go; this is its one step we need.
type goBundler struct {
	goBin string // absolute path of the go command
	dir   string // where go runs: a directory inside the module that requires vbctoken
	pkg   string // import path of the function's main package
}

// TryBundle implements awscdk.ILocalBundling: it writes outputDir/bootstrap for
// linux/arm64. CDK calls it during synth; a failed build is a synth error, never a
// fallback to Docker.
func (b *goBundler) TryBundle(outputDir *string, _ *awscdk.BundlingOptions) *bool {
	if err := b.build(context.Background(), *outputDir); err != nil {
		panic(err.Error())
	}
	return jsii.Bool(true)
}

func (b *goBundler) build(ctx context.Context, outputDir string) error {
	cmd := lambdabuild.Command(ctx, b.goBin, b.dir, b.pkg, outputDir, lambdabuild.GOOS, lambdabuild.GOARCH)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("keeper: go build %s for %s/%s: %w\n%s", b.pkg, lambdabuild.GOOS, lambdabuild.GOARCH, err,
			strings.TrimSpace(out.String()))
	}
	return nil
}

// lookGo finds the go command: $GOROOT/bin/go when GOROOT is set (what `go run` and
// `go test` run under), else PATH.
func lookGo() (string, error) {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); isExecutable(p) {
			return p, nil
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New(goMissingHint)
	}
	return p, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// packageDir returns the source directory of pkg as the go command in dir resolves it
// (`go list`), which also proves the package builds from here before CDK asks.
func packageDir(goBin, dir, pkg string) (string, error) {
	cmd := exec.Command(goBin, "list", "-f", "{{.Dir}}", pkg)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

// functionCode is the code of one function: the prebuilt binary in codeDir when given,
// else the function built from source at synth. The asset is hashed on the build output
// (the flags make it reproducible), so a deployment updates a function only when its
// binary changed, and CDK never fingerprints the module's source tree.
func functionCode(codeDir, pkg string, src *goSource) awslambda.Code {
	if codeDir != "" {
		return awslambda.Code_FromAsset(jsii.String(codeDir), nil)
	}
	dir, err := packageDir(src.goBin, src.dir, pkg)
	if err != nil {
		panic(fmt.Sprintf("keeper: %v", err))
	}
	return awslambda.Code_FromAsset(jsii.String(dir), &awss3assets.AssetOptions{
		AssetHashType: awscdk.AssetHashType_OUTPUT,
		Bundling: &awscdk.BundlingOptions{
			// Required by CDK, never pulled: the local bundler always builds or fails.
			Image: awscdk.DockerImage_FromRegistry(jsii.String("public.ecr.aws/docker/library/golang")),
			Local: &goBundler{goBin: src.goBin, dir: src.dir, pkg: pkg},
		},
	})
}

// goSource is where the functions are built from: the go command and its directory.
type goSource struct {
	goBin, dir string
}
