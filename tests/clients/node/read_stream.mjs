// Reads an SSE stream with one of npm's clients and prints what it delivered, as JSON.
//   node read_stream.mjs <eventsource|eventsource-parser> <url> <last data>
// Stops at the event whose data is <last data> (or after 10 s), so a client that
// reconnects does not run for ever.
import { EventSource } from "eventsource";
import { createParser } from "eventsource-parser";

const [which, url, last] = process.argv.slice(2);
const received = [];
const finish = () => {
  process.stdout.write(JSON.stringify(received) + "\n");
  process.exit(0);
};
setTimeout(finish, 10_000);

if (which === "eventsource") {
  const source = new EventSource(url);
  source.onmessage = (event) => {
    received.push(event.data);
    if (event.data === last) {
      source.close();
      finish();
    }
  };
} else {
  const response = await fetch(url);
  const decoder = new TextDecoder();
  const parser = createParser({
    onEvent(event) {
      received.push(event.data);
    },
  });
  for await (const chunk of response.body) {
    parser.feed(decoder.decode(chunk, { stream: true }));
    if (received.includes(last)) break;
  }
  finish();
}
