// Third-party clients reading a libernet node, run by tests/it/gateways.rs:
//
//   node check.mjs helia <node url> <cid> <sha256 hex> <absent cid>
//     @helia/verified-fetch, with the node as its only trustless gateway (HTTP only: no
//     libp2p, no delegated routers, so nothing leaves loopback), fetches ipfs://<cid>,
//     checks the bytes hash to <sha256 hex>, and that an absent CID fails. It is first
//     pointed at a lying gateway on loopback, to show that it verifies what it gets.
//   node check.mjs blossom <node url> <sha256 hex> <absent sha256 hex>
//     blossom-client-sdk's hasBlob and downloadBlob against the node as a Blossom server.
//
// Prints one line per check; exits 0 when all pass, 1 otherwise.
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'

const [mode, ...args] = process.argv.slice(2)
// Generous bounds for a loaded machine; an absent block ends by this bound or by a
// failure, whichever is first (helia keeps waiting for more providers after a 404).
const TIMEOUT_MS = 20_000
const ABSENT_MS = 8_000

function sha256Hex (bytes) {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * `fetch(resource)` given up after `ms`. (helia's own wait for providers holds no timer,
 * so an AbortSignal.timeout alone can leave Node with nothing to run and exit early.)
 */
async function fetchWithin (fetch, resource, ms) {
  const controller = new AbortController()
  let timer
  const deadline = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      controller.abort()
      reject(new Error(`no answer within ${ms} ms`))
    }, ms)
  })
  try {
    return await Promise.race([fetch(resource, { signal: controller.signal }), deadline])
  } finally {
    clearTimeout(timer)
  }
}

function fail (message) {
  console.error(`FAIL ${message}`)
  process.exit(1)
}

async function verifiedFetchFor (gateway) {
  const { createHeliaLight } = await import('helia')
  const { withHTTP } = await import('@helia/http')
  const { fallbackRouter } = await import('@helia/fallback-router')
  const { createVerifiedFetchWithHelia } = await import('@helia/verified-fetch')
  const helia = withHTTP(createHeliaLight(), {
    delegatedRouters: [],
    recursiveGateways: [],
    allowInsecure: true,
    allowLocal: true
  })
  // The gateway as an ordinary router that names it as every block's provider. (As a
  // "fallback" router alone it is never asked: helia 7's routing waits forever when it
  // has no other router.)
  const gateways = fallbackRouter({ gateways: [gateway], shuffle: false })
  helia.addRouter({
    name: 'gateway',
    findProviders: (cid, options) => gateways.findProviders(cid, options)
  })
  await helia.start()
  const fetch = await createVerifiedFetchWithHelia(helia)
  return { fetch, helia }
}

/** A gateway on loopback that answers every request with bytes of the wrong hash. */
async function lyingGateway () {
  const liar = { asked: 0 }
  const server = createServer((req, res) => {
    liar.asked++
    res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' })
    res.end('not the block you asked for')
  })
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  liar.server = server
  liar.url = `http://127.0.0.1:${server.address().port}`
  return liar
}

async function helia ([url, cid, expected, absent]) {
  const liar = await lyingGateway()
  const lied = await verifiedFetchFor(liar.url)
  let accepted = false
  try {
    const res = await fetchWithin(lied.fetch, `ipfs://${cid}`, 5_000)
    if (res.ok) {
      const body = new Uint8Array(await res.arrayBuffer())
      accepted = sha256Hex(body) !== expected
    }
  } catch {}
  await lied.helia.stop()
  liar.server.close()
  if (liar.asked === 0) fail('helia never asked the lying gateway')
  if (accepted) fail('helia accepted wrong bytes from a lying gateway')
  console.log(`ok helia refuses a lying gateway (asked ${liar.asked} times)`)

  const { fetch, helia } = await verifiedFetchFor(url)
  try {
    const res = await fetchWithin(fetch, `ipfs://${cid}`, TIMEOUT_MS)
    if (!res.ok) fail(`ipfs://${cid}: status ${res.status}`)
    const body = new Uint8Array(await res.arrayBuffer())
    const got = sha256Hex(body)
    if (got !== expected) fail(`ipfs://${cid}: bytes hash to ${got}, want ${expected}`)
    console.log(`ok helia fetched ipfs://${cid} (${body.length} bytes)`)

    let found = false
    try {
      const res = await fetchWithin(fetch, `ipfs://${absent}`, ABSENT_MS)
      found = res.ok
    } catch {}
    if (found) fail(`ipfs://${absent}: answered, but the node does not hold it`)
    console.log(`ok helia finds no ipfs://${absent}`)
  } finally {
    await helia.stop()
  }
}

async function blossom ([url, sha256, absent]) {
  const { Actions } = await import('blossom-client-sdk')
  if (!await Actions.hasBlob(url, sha256)) fail(`hasBlob ${sha256}: false`)
  console.log(`ok blossom hasBlob ${sha256}`)
  if (await Actions.hasBlob(url, absent)) fail(`hasBlob ${absent}: true`)
  console.log(`ok blossom hasBlob ${absent} is false`)
  const res = await Actions.downloadBlob(url, sha256, { timeout: TIMEOUT_MS })
  if (!res.ok) fail(`downloadBlob ${sha256}: status ${res.status}`)
  const body = new Uint8Array(await res.arrayBuffer())
  const got = sha256Hex(body)
  if (got !== sha256) fail(`downloadBlob ${sha256}: bytes hash to ${got}`)
  console.log(`ok blossom downloadBlob ${sha256} (${body.length} bytes)`)
  let reason = null
  try {
    await Actions.downloadBlob(url, absent, { timeout: TIMEOUT_MS })
  } catch (e) {
    reason = e.message
  }
  if (reason == null) fail(`downloadBlob ${absent}: no error`)
  console.log(`ok blossom downloadBlob ${absent} fails: ${reason}`)
}

const modes = { helia, blossom }
if (!(mode in modes)) fail(`usage: node check.mjs helia|blossom ...`)
await modes[mode](args)
process.exit(0)
