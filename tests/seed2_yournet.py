"""The seed-2 answer's Gluon port `YourNet`, verbatim, and the seed's three mistakes as variants of it.

It reuses one `self.pool` MaxPool2D block for both pools, as the answer says ("You need only one
pooling operation, since it doesn't have trainable parameters"). Run these in an MXNet worker."""
import mxnet as mx
from mxnet import gluon, nd
from mxnet.gluon import HybridBlock

from xvalidate.transfer import transfer_weights


class YourNet(HybridBlock):
    def __init__(self,kernel_size = (3,3),dilation =(1,1),**kwargs):
        super(YourNet,self).__init__(**kwargs)

        # Use this scheme for padding='same' for **ODD** kernels
        px = dilation[0] * (kernel_size[0] - 1)//2
        py = dilation[1] * (kernel_size[1] - 1)//2

        pad = (px,py)

        # Here you DECLARE but not use!! the layers
        with self.name_scope():
            self.conv1 = gluon.nn.Conv2D(channels=128,kernel_size=kernel_size,padding=pad,dilation=dilation,prefix='_block1_conv1')
            self.conv2 = gluon.nn.Conv2D(channels=256,kernel_size=kernel_size,padding=pad,dilation=dilation,prefix='_block2_conv2')

            self.last_layer = gluon.nn.Dense(units=2,prefix='_final_fully_connected')

            # You need only one pooling operation, since it doesn't have trainable
            # parameters
            self.pool = gluon.nn.MaxPool2D(pool_size=(2,2),strides=(2,2))


    def hybrid_forward(self, F, input):
        """
        In this function you specify how you want to use the layers you defined
        previously. F stands for functional, it has some additional 
        function definitions. There are multiple ways to achieve the same result 
        (using layers instead of F.SomeFunction). 
        """


        out = self.conv1(input) # pass input through first layer
        out = F.relu(out) # do the activation of the output
        out = self.pool(out) # Do max pooling after the activation
        out = self.conv2(out) # Now pass through second convolution
        out = F.relu(out) # another activation
        out = self.pool(out) # Again maxpool 2D


        out = F.flatten(out) # Flatten the output. Similar with gluon.nn.Flatten()

        out = self.last_layer(out) # Apply last layer (dense)

        # Caution with the softmax on the channel applied
        out = F.softmax(out,axis=-1) # Do the softmax, with the last layer

        # Once you are done, return the output.
        return out


class YourNetWithoutSoftmax(YourNet):
    """The seed's create_model mistake: Gluon's Dense has no softmax, and none is added."""

    def hybrid_forward(self, F, input):
        out = self.pool(F.relu(self.conv1(input)))
        out = self.pool(F.relu(self.conv2(out)))
        return self.last_layer(F.flatten(out))


VARIANTS = ("right", "pad0", "nosoftmax", "noperm")


def export(variant: str, keras_h5: str, prefix: str) -> str:
    """YourNet (or a variant of it) with the Keras weights transferred, exported; the symbol path.

    pad0: both convolutions without padding (the seed's first try); only they get Keras weights,
    the Dense, now 18*28*256 wide, keeps a seeded initialization. noperm: the Dense weights
    copied without permuting their rows to Gluon's NCHW Flatten order."""
    mx.random.seed(0)
    with mx.name.NameManager():
        net = YourNetWithoutSoftmax() if variant == "nosoftmax" else YourNet()
    if variant == "pad0":
        for conv in (net.conv1, net.conv2):
            conv._kwargs["pad"] = (0, 0)
    net.initialize()
    x = nd.zeros((1, 3, 80, 120))
    if variant == "pad0":
        net(x)  # shapes the Dense for the smaller maps
        transfer_weights(keras_h5, net.conv1, layers=["block1_conv1"])
        transfer_weights(keras_h5, net.conv2, layers=["block2_conv1"])
    else:
        transfer_weights(keras_h5, net, permute_flatten=variant != "noperm")
    net.hybridize()
    net(x)
    net.export(prefix)
    return prefix + "-symbol.json"
