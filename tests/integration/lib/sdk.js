// sdk.js -- the official Node SDKs as the tests use them: a device or module client that answers a direct
// method through a handler, and a direct-method call from the service SDK.
'use strict';

const { Client: ServiceClient } = require('azure-iothub');

// Makes client answer methodName with handler(request) -> [status, payload] (null: no answer), opens it, and
// resolves {client, calls} (calls: every request the handler saw). methodName null answers nothing.
async function answerMethods(client, methodName, handler, { module = false } = {}) {
  const calls = [];
  if (methodName) {
    const register = module ? client.onMethod.bind(client) : client.onDeviceMethod.bind(client);
    register(methodName, (request, response) => {
      calls.push(request);
      const answer = handler(request);
      if (answer) response.send(answer[0], answer[1], () => {});
    });
  }
  await client.open();
  return { client, calls };
}

// Invokes a direct method on a device (or a module) with the official service SDK.
function invoke(emu, deviceId, params, moduleId) {
  const service = ServiceClient.fromConnectionString(emu.serviceConnectionString());
  return moduleId ? service.invokeDeviceMethod(deviceId, moduleId, params) : service.invokeDeviceMethod(deviceId, params);
}

module.exports = { answerMethods, invoke };
