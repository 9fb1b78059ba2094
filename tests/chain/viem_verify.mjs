// viem's verifyMessage / verifyTypedData over a public client on the given node, as a
// reference verifier: one JSON request per stdin line, one JSON answer per stdout line.
//   {"address", "message", "signature"}             -> {"valid": true|false}
//   {"address", "typedData": {...}, "signature"}    -> {"valid": true|false}
// An exception (the node did not answer) is {"error": "..."}.
import readline from 'node:readline'
import { createPublicClient, http } from 'viem'

const client = createPublicClient({ transport: http(process.argv[2], { retryCount: 0 }) })

async function verify(request) {
  const { address, signature } = request
  if (request.typedData) {
    const { domain, types, primaryType, message } = request.typedData
    return client.verifyTypedData({ address, signature, domain, types, primaryType, message })
  }
  return client.verifyMessage({ address, signature, message: request.message })
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  let answer
  try {
    answer = { valid: await verify(JSON.parse(line)) }
  } catch (error) {
    answer = { error: String(error?.shortMessage ?? error) }
  }
  process.stdout.write(`${JSON.stringify(answer)}\n`)
}
