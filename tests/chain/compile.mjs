// Compiles Solidity with the solc pinned in package-lock.json (solc-js: no download).
// usage: node compile.mjs '<solc settings JSON>' File.sol...
// prints {"<contract name>": {"abi": [...], "bytecode": "0x…"}} for every contract.
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import solc from 'solc'

const modules = path.join(path.dirname(fileURLToPath(import.meta.url)), 'node_modules')
const [settings, ...files] = process.argv.slice(2)
const sources = Object.fromEntries(
  files.map((file) => [path.basename(file), { content: fs.readFileSync(file, 'utf8') }]),
)
const input = {
  language: 'Solidity',
  sources,
  settings: {
    ...JSON.parse(settings),
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
  },
}
// Imports such as "@openzeppelin/contracts/…" come from this folder's node_modules.
function findImports(name) {
  try {
    return { contents: fs.readFileSync(path.join(modules, name), 'utf8') }
  } catch {
    return { error: `not found: ${name}` }
  }
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }))
const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
if (errors.length > 0) {
  process.stderr.write(errors.map((e) => e.formattedMessage).join('\n'))
  process.exit(1)
}
const contracts = {}
for (const unit of Object.values(output.contracts)) {
  for (const [name, contract] of Object.entries(unit)) {
    contracts[name] = { abi: contract.abi, bytecode: `0x${contract.evm.bytecode.object}` }
  }
}
process.stdout.write(JSON.stringify({ solc: solc.version(), contracts }))
