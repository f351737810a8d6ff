// Runs @vercel/cosmosdb-server over HTTPS with our own certificate (see cosmos-certs.sh).
// Usage: node cosmos-server.js HOST PORT CERT KEY
"use strict";
const fs = require("fs");
const { createHttpsServer } = require("@vercel/cosmosdb-server");

const [host, port, cert, key] = process.argv.slice(2);
// keepAlive: real Cosmos DB keeps connections open; without it the server answers
// "connection: close" to every request and each one pays a new TLS handshake.
const server = createHttpsServer({
  cert: fs.readFileSync(cert),
  key: fs.readFileSync(key),
  keepAlive: true,
});
server.listen(Number(port), host, () => {
  console.log(`cosmosdb-server ready on https://${host}:${port}`);
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
